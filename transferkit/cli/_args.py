"""Argument types, data options and output checks that several subcommands share."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["BUILTIN_DATASETS", "_builtin", "_check_device", "_check_output_dir", "_check_output_file",
           "_data_arguments", "_positive_float", "_positive_int", "_training_data"]

#: The datasets ``--data`` names without a folder.
BUILTIN_DATASETS = ("animal_mnist", "fashion_mnist", "digits")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _data_arguments(p: argparse.ArgumentParser, evaluate: bool = False) -> None:
    p.add_argument("--data", required=True,
                   help="an image folder (root/<class>/<image>, or root/train + root/val or "
                   f"root/test) or a built-in dataset: {', '.join(BUILTIN_DATASETS)}; for "
                   "segmentation a folder root/images + root/masks, nuclei or animal_scenes")
    p.add_argument("--n-per-class", type=_positive_int, default=None,
                   help="built-in datasets: keep this many images per class"
                   + (" of the test set" if evaluate else " for training"))
    if not evaluate:
        p.add_argument("--n-per-class-test", type=_positive_int, default=None,
                       help="built-in datasets: keep this many test images per class")
        p.add_argument("--val-fraction", type=float, default=0.1,
                       help="an image folder without val/ or test/: hold out this fraction, "
                       "stratified (default: 0.1)")


def _builtin(name: str):
    from .. import datasets

    key = name.replace("-", "_").lower()
    return getattr(datasets, key) if key in BUILTIN_DATASETS else None


def _training_data(args: argparse.Namespace) -> tuple[Any, Any, list[str], str]:
    """``(train, held_out, class_names, description)`` from ``--data``."""
    from ..data.sources import stratified_split

    loader = _builtin(args.data)
    if loader is not None:
        split = loader(n_per_class=args.n_per_class, n_per_class_test=args.n_per_class_test)
        return split.train, split.test, list(split.classes), f"{args.data} (its test split)"
    root = Path(args.data)
    if not root.is_dir():
        raise FileNotFoundError(
            f"--data {args.data!r} is neither an image folder nor a built-in dataset "
            f"({', '.join(BUILTIN_DATASETS)})."
        )
    held = next((root / n for n in ("val", "valid", "validation", "test")
                 if (root / n).is_dir()), None)
    if held is not None and (root / "train").is_dir():
        from torchvision.datasets import ImageFolder

        classes = ImageFolder(str(root / "train")).classes
        return str(root / "train"), str(held), classes, f"{held}"
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(root))
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}.")
    try:
        train, held = stratified_split(folder, args.val_fraction, seed=args.seed)
    except ValueError as exc:  # scikit-learn: too few held-out images for the classes
        raise ValueError(f"--val-fraction {args.val_fraction} holds out too few images of "
                         f"{root} for {len(folder.classes)} classes; raise --val-fraction or "
                         f"add root/val/ ({exc})") from None
    return train, held, list(folder.classes), (
        f"a stratified {args.val_fraction:.0%} of {root} (seed {args.seed})")


def _check_device(device: str | None) -> None:
    from .._utils import resolve_device

    if device is not None:
        try:
            resolve_device(device)
        except ValueError as exc:
            raise ValueError(f"--device: {exc}") from None


def _check_output_dir(path: str, flag: str) -> None:
    """Fail now, not after training, when ``path`` cannot hold the outputs."""
    import tempfile

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"{flag} {path!r} cannot be written ({exc.strerror or exc}); choose "
                         "a folder you can write to") from None


def _check_output_file(path: str, flag: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {path!r} is a folder; give a file name such as "
                         f"{str(p / 'report.json')!r}")
    _check_output_dir(str(p.parent), flag)
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{flag} {path!r} exists and cannot be overwritten")
