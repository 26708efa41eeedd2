"""The command line's image-to-image paths: ``finetune --task image2image``, ``evaluate`` and
``predict --out`` of an image-to-image model (called from :mod:`transferkit.cli.main`).

``--data`` is a built-in dataset, ``super_resolution`` (x4) or ``colorization``, built from real
photographs shipped in packages; their test split (a region of each photo that no training crop
touches) is held out. Crops are ``--image-size`` pixels (default 64); ``--n-per-class`` and
``--n-per-class-test`` set the number of training and test crops (default 512 and 128).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from . import openmp

__all__ = ["I2I_BUILTIN", "image2image_data", "finetune_image2image", "print_image_predictions"]

I2I_BUILTIN = ("super_resolution", "colorization")


def image2image_data(args: argparse.Namespace, size: int | None = None, *,
                     evaluate: bool = False) -> Any:
    """The ``(train, test)`` split of a built-in image-to-image ``--data`` (``evaluate``:
    ``--n-per-class`` counts the test crops, as for ``transferkit evaluate``)."""
    from .. import datasets

    key = str(args.data).replace("-", "_").lower()
    size = size or getattr(args, "image_size", None) or 64
    # one "class" of pairs: --n-per-class / --n-per-class-test count training / test crops
    n, n_test = getattr(args, "n_per_class", None), getattr(args, "n_per_class_test", None)
    if evaluate:
        n, n_test = None, n
    counts = {k: v for k, v in (("n", n), ("n_test", n_test)) if v is not None}
    if key == "super_resolution":
        return datasets.super_resolution(scale=4, size=size, seed=getattr(args, "seed", 0),
                                         **counts)
    if key == "colorization":
        return datasets.colorization(size=size, seed=getattr(args, "seed", 0), **counts)
    raise ValueError(f"--data {args.data!r}: image-to-image data is one of the built-in "
                     f"datasets {', '.join(I2I_BUILTIN)}.")


def finetune_image2image(args: argparse.Namespace, options: dict[str, Any], main: bool) -> int:
    """``transferkit finetune --task image2image``: train, evaluate on the test split, save."""
    from ..evaluate import evaluate
    from ..finetune import finetune
    from ..load_backbone import load_backbone
    from ..replace_head import replace_head
    from ..save import save

    train, held = image2image_data(args)
    head = args.head or "unet"
    weights = None if args.weights.lower() == "none" else args.weights
    model = replace_head(load_backbone(args.backbone, weights=weights),
                         int(train.targets.shape[1]), head, task="image2image", seed=args.seed)
    # the crop size the pairs were cut at, recorded so that 'evaluate' rebuilds the same data
    options["image_size"] = int(train.targets.shape[-1])
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
    print(f"evaluated on {args.data} (its test split): PSNR {report.psnr:.2f} dB (input "
          f"{report.baseline['psnr']:.2f}), SSIM {report.ssim:.4f} (input "
          f"{report.baseline['ssim']:.4f})")
    print(f"saved {out / 'model.safetensors'}, {out / 'model.json'}, {out / 'history.json'}, "
          f"{out / 'eval.json'}")
    return 0


def print_image_predictions(model: Any, images: list[str], out: str | None,
                            device: str | None) -> int:
    """``transferkit predict`` of an image-to-image model: one line per image (path, written
    PNG, output size)."""
    from ..predict import predict

    preds = predict(model, images, device=device, out_dir=out)
    for path, p in zip(images, preds):
        print(f"{path}\t{p.path if p.path else '-'}\t{p.image.shape[2]}x{p.image.shape[1]}")
    return 0
