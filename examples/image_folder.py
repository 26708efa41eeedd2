"""Your own images: fine-tune on an image folder, evaluate, and predict image files.

transferkit reads torchvision's ImageFolder layout, one sub-folder per class::

    animals/
      train/bear/001.png  train/bird/002.png ...
      val/bear/101.png    val/bird/102.png ...

(With no ``train/`` and ``val/``, pass the folder itself and hold out part of it with
``tk.stratified_split``.) This example first writes such a folder from Animal-MNIST, so that it
runs anywhere; point ``--folder`` at your own to use it on your images. The same run from
the command line::

    transferkit finetune --data animals --backbone efficientnet_lite0 --epochs 2 --out runs/animals
    transferkit predict runs/animals/model animals/val/bear/*.png

    python examples/image_folder.py           # ~1 minute on 2 CPU cores
    python examples/image_folder.py --tiny    # seconds (for the tests)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import transferkit as tk
from transferkit.datasets import animal_mnist


def write_image_folder(root: Path, n_per_class: int, n_val_per_class: int) -> Path:
    """Write Animal-MNIST images as PNG files in ``root/{train,val}/<class>/``."""
    from PIL import Image

    train, test, classes = animal_mnist(n_per_class=n_per_class,
                                        n_per_class_test=n_val_per_class)
    for split, ds in (("train", train), ("val", test)):
        for i, (image, label) in enumerate(ds):
            folder = root / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (image[0] * 255).round().byte().numpy()  # (28, 28) uint8
            Image.fromarray(pixels, mode="L").save(folder / f"{i:05d}.png")
    return root


def main(argv: list[str] | None = None) -> tk.EvalReport:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run")
    parser.add_argument("--folder", default=None,
                        help="an image folder with train/ and val/ (default: write one)")
    args = parser.parse_args(argv)
    n, n_val, size, epochs = (3, 2, 32, 1) if args.tiny else (60, 20, 64, 2)

    root = Path(args.folder) if args.folder else write_image_folder(
        Path(tempfile.mkdtemp(prefix="transferkit-folder-")) / "animals", n, n_val)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())

    model = tk.replace_head(tk.load_backbone("efficientnet_lite0", weights="DEFAULT"),
                            num_classes=len(classes), class_names=classes)
    # A path is read with torchvision's ImageFolder; images are decoded, cropped and
    # normalised from the backbone's data_config in DataLoader workers.
    history = tk.finetune(model, root / "train", root / "val", epochs=epochs, probe_epochs=1,
                          strategy="lp_ft", image_size=size, num_workers=0, progress=False)
    print(history)
    report = tk.evaluate(model, root / "val", num_workers=0, progress=False)
    print(f"validation accuracy {report.accuracy:.3f} on {report.n_samples} images")

    files = sorted((root / "val").glob("*/*.png"))[:3]
    for path, pred in zip(files, tk.predict(model, files, top_k=2)):
        print(f"{path.parent.name}/{path.name}: {pred.class_name} ({pred.probability:.2f}); "
              f"runner-up {pred.top_class_names[1]}")
    return report


if __name__ == "__main__":
    main()
