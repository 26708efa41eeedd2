"""The command line's segmentation paths: ``finetune --task segmentation``, ``evaluate`` and
``predict --out`` of a model with a dense head (called from :mod:`transferkit.cli.main`).

``--data`` is a built-in dataset (``nuclei``, ``animal_scenes``: their test split is held out)
or a folder ``root/images`` + ``root/masks`` (``root/train`` + ``root/val``/``root/test`` of
that layout, or one folder split at random by ``--val-fraction``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from . import openmp

__all__ = ["SEG_BUILTIN", "segmentation_data", "eval_segmentation_data", "finetune_segmentation",
           "print_mask_predictions"]

SEG_BUILTIN = ("nuclei", "animal_scenes")


def _builtin(name: str, size: int | None):
    from .. import datasets

    key = name.replace("-", "_").lower()
    if key == "nuclei":
        return datasets.nuclei(tile=size or 64, channels=3)
    if key == "animal_scenes":
        return datasets.animal_scenes(size=size or 64)
    return None


def _num_classes(folder) -> int:
    """Classes of a mask folder: the largest label + 1 (255, ignored, left out)."""
    top = 0
    for i in range(len(folder)):
        m = folder[i][1]
        m = m[m != 255]
        top = max(top, int(m.max()) + 1 if m.numel() else 1)
    return max(top, 2)


def segmentation_data(args: argparse.Namespace) -> tuple[Any, Any, list[str], str]:
    """``(train, held_out, class_names, description)`` of a segmentation ``--data``."""
    from torch.utils.data import random_split
    import torch

    from ..data.dense import SegmentationFolder
    from ..errors import DataError

    split = _builtin(args.data, args.image_size)
    if split is not None:
        return split.train, split.test, list(split.classes), f"{args.data} (its test split)"
    root = Path(args.data)
    if not root.is_dir():
        raise FileNotFoundError(
            f"--data {args.data!r} is neither a segmentation folder (root/images + root/masks) "
            f"nor a built-in segmentation dataset ({', '.join(SEG_BUILTIN)}).")
    held = next((root / n for n in ("val", "valid", "validation", "test")
                 if (root / n / "images").is_dir()), None)
    if held is not None and (root / "train" / "images").is_dir():
        train = SegmentationFolder(root / "train")
        k = _num_classes(train)
        return train, SegmentationFolder(held), [str(i) for i in range(k)], str(held)
    folder = SegmentationFolder(root)
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}.")
    n_val = max(1, round(len(folder) * args.val_fraction))
    if n_val >= len(folder):
        raise DataError(f"{str(root)!r} holds {len(folder)} image(s): too few to hold "
                        f"{n_val} out for evaluation.")
    train, val = random_split(folder, [len(folder) - n_val, n_val],
                              generator=torch.Generator().manual_seed(args.seed))
    k = _num_classes(folder)
    return train, val, [str(i) for i in range(k)], (
        f"a random {args.val_fraction:.0%} of {root} (seed {args.seed})")


def eval_segmentation_data(args: argparse.Namespace, image_size: int) -> Any:
    """The data ``evaluate`` scores a segmentation model on."""
    split = _builtin(args.data, image_size)
    if split is not None:
        return split.test
    if not Path(args.data).is_dir():
        raise FileNotFoundError(
            f"--data {args.data!r} is neither a segmentation folder (root/images + root/masks) "
            f"nor a built-in segmentation dataset ({', '.join(SEG_BUILTIN)}).")
    return args.data


def finetune_segmentation(args: argparse.Namespace, options: dict[str, Any],
                          main: bool) -> int:
    """``transferkit finetune --task segmentation``: train, evaluate on the held-out part, save."""
    from ..evaluate import evaluate
    from ..finetune import finetune
    from ..load_backbone import load_backbone
    from ..replace_head import replace_head
    from ..save import save

    train, held, classes, held_desc = segmentation_data(args)
    head = args.head or "unet"
    weights = None if args.weights.lower() == "none" else args.weights
    model = replace_head(load_backbone(args.backbone, weights=weights), len(classes), head,
                         class_names=classes)
    if args.loss:
        options["loss"] = args.loss
    openmp.restart_before_training()
    start = time.perf_counter()
    history = finetune(model, train, held, **options)
    seconds = time.perf_counter() - start
    report = evaluate(model, held, progress=options["progress"], device=args.device)
    if not main:
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save(model, out / "model")
    (out / "history.json").write_text(json.dumps(history.to_list(), indent=2) + "\n",
                                      encoding="utf-8")
    report.to_json(out / "eval.json")
    print(f"{args.backbone} ({weights or 'random init'}) + {head} head, {args.strategy}, "
          f"{len(history)} epochs in {seconds:.0f} s")
    print(f"evaluated on {held_desc}: mIoU {report.mean_iou:.4f}, Dice {report.mean_dice:.4f}, "
          f"pixel accuracy {report.pixel_accuracy:.4f}")
    print(f"saved {out / 'model.safetensors'}, {out / 'model.json'}, {out / 'history.json'}, "
          f"{out / 'eval.json'}")
    return 0


def print_mask_predictions(model: Any, images: list[str], out: str | None,
                           device: str | None) -> int:
    """``transferkit predict`` of a segmentation model: one line per image (path, written PNG,
    fraction of pixels per class)."""
    from ..predict import predict

    preds = predict(model, images, device=device, out_dir=out)
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    for path, p in zip(images, preds):
        counts = p.mask.flatten().bincount(minlength=model.num_classes).float()
        frac = " ".join(f"{names[c]}={v:.3f}" for c, v in enumerate((counts / counts.sum())
                                                                   .tolist()) if v > 0)
        print(f"{path}\t{p.path if p.path else '-'}\t{frac}")
    return 0
