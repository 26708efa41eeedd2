"""The classic recipe: VGG16's convolutional features with VGG's classifier, for 10 classes.

This is the recipe of the article transferkit grew from, step by step:

1. load the pretrained model: ``vgg16`` with its ImageNet weights;
2. define the new task: 10 classes (here Animal-MNIST's 10 animals);
3. change the top of the network: VGG's classifier, 7x7 average pool then
   25088 -> 4096 -> 4096 -> 10 with ReLU and Dropout (the article's ``VGG16Custom``);
4. fine-tune everything with cross-entropy and SGD, lr 0.001, momentum 0.9.

The pretrained weights (528 MB) come from torch.hub's cache, or from ``--weights FILE``; with
no network and no cached file the script stops with a message saying where to put the file
(see docs/offline.md). ``--tiny`` builds VGG16 untrained with a 256-wide classifier on a few
images at 32 px, so that the recipe runs in seconds in the tests.

    python examples/vgg16_classic.py                      # pretrained, a few minutes on CPU
    python examples/vgg16_classic.py --weights vgg16.pth  # weights from a file
    python examples/vgg16_classic.py --tiny
"""

from __future__ import annotations

import argparse
import sys

import transferkit as tk
from transferkit.datasets import animal_mnist


def main(argv: list[str] | None = None) -> tk.EvalReport:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run")
    parser.add_argument("--weights", default="DEFAULT",
                        help="'DEFAULT' (torch.hub cache), a .pth/.safetensors file, or 'none'")
    args = parser.parse_args(argv)
    if args.tiny:
        weights, hidden, n_per_class, n_test, size, epochs = None, 256, 3, 2, 32, 1
    else:
        weights = None if args.weights.lower() == "none" else args.weights
        hidden, n_per_class, n_test, size, epochs = 4096, 50, 20, 64, 2

    # 1. The pretrained model (the convolutional part: VGG16's `features`).
    try:
        backbone = tk.load_backbone("vgg16", weights=weights)
    except tk.errors.WeightsUnavailableError as exc:
        sys.exit(f"vgg16_classic: {exc}")
    # 2. The new task: 10 classes.
    train, test, classes = animal_mnist(n_per_class=n_per_class, n_per_class_test=n_test)
    # 3. The new top: VGG's classifier for 10 classes (f(x) = W x + b, three times).
    model = tk.replace_head(backbone, num_classes=10, head="vgg_classifier", hidden=hidden,
                            class_names=list(classes))
    print(model)
    # 4. Fine-tuning: every parameter, cross-entropy, SGD(lr=0.001, momentum=0.9), a constant
    #    learning rate, as in the article's loop.
    history = tk.finetune(model, train, epochs=epochs, strategy="full", optimizer="sgd",
                          lr=0.001, momentum=0.9, weight_decay=0.0, schedule="constant",
                          image_size=size, augment=False, batch_size=16, progress=False)
    print(history)
    report = tk.evaluate(model, test, progress=False)
    print(f"test accuracy {report.accuracy:.3f}, macro F1 {report.macro_f1:.3f}")
    return report


if __name__ == "__main__":
    main()
