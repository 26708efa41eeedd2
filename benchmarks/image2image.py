"""Image-to-image transfer, measured on a real budget: pretrained encoder vs random init vs
the identity baseline, and l1+perceptual vs l1, on super-resolution x4 and colourisation.

On each task (``tk.datasets.super_resolution(scale=4)`` and ``tk.datasets.colorization()``,
64 px crops of the 28 packaged real photos; test crops from the right quarter of each photo,
which no training crop touches), every model gets the same budget: the same training crops,
epochs, batch size, learning rate, optimiser (AdamW) and cosine schedule, seed 0:

- ``pretrained l1``: EfficientNet-Lite0 (ImageNet, offline) + unet, lp_ft (1 decoder epoch on the
  frozen encoder, then everything with the encoder at 0.1 x lr), loss l1;
- ``random l1``: the same recipe from a randomly initialised encoder (the issue's comparison);
- ``random l1, full lr``: random init trained with ``strategy="full"`` for the same number of
  epochs and steps, everything at the full lr (lp_ft's 0.1 x encoder lr suits pretrained
  weights, not random ones: this row checks that random init was not merely handicapped);
- ``pretrained l1+perceptual``: as ``pretrained l1`` with ``loss="l1+perceptual"`` (frozen
  ImageNet Lite0 features, the default weight 0.1);

and the identity baseline (the degraded input: bicubic upsampling, the grey image).

Figures on the test crops: PSNR, SSIM, the perceptual distance of ``evaluate`` (Lite0 features:
the very network the l1+perceptual model is trained on, so it favours that model) and the same
distance on an independent judge, ImageNet MobileNetV2 (offline weights), which no model was
trained on. ``vs`` columns give the paired per-image difference to the reference row, mean and
standard error over the test crops.

The configuration was fixed before the run, on principle, not tuned on the test crops: the
loaders' default crop counts (512 training, 128 test), the training crops cut to 320 and
1 + 3 epochs (80 optimiser steps: 2.5x the demo's crops, 3.3x its steps) so that the 8
trainings fit 12 minutes on one thread of a shared machine; lr 1e-3 and batch 16 are the demo's
(fastai's ``unet_learner`` default lr is 1e-3). Run once:

    OMP_NUM_THREADS=1 python benchmarks/image2image.py --json benchmarks/image2image.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the checkout on sys.path)
import torch

import transferkit as tk
from transferkit.metrics.image import psnr, ssim
from transferkit.training.perceptual import PerceptualLoss

MODELS = (  # name, encoder weights, strategy, loss
    ("pretrained l1", "DEFAULT", "lp_ft", "l1"),
    ("random l1", None, "lp_ft", "l1"),
    ("random l1, full lr", None, "full", "l1"),
    ("pretrained l1+perceptual", "DEFAULT", "lp_ft", "l1+perceptual"),
)


def _load() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _data(task: str, args: argparse.Namespace):
    common = dict(size=args.size, n=args.n_train, n_test=args.n_test, seed=args.seed)
    if task == "super_resolution":
        return tk.datasets.super_resolution(scale=4, **common)
    return tk.datasets.colorization(**common)


def _per_image(images: torch.Tensor, targets: torch.Tensor,
               judge: PerceptualLoss) -> dict[str, torch.Tensor]:
    """PSNR, SSIM and the independent judge's distance per image, (N,) each."""
    with torch.no_grad():
        judged = torch.cat([judge.distance(images[i:i + 32], targets[i:i + 32])
                            for i in range(0, len(images), 32)])
    return {"psnr": psnr(images, targets, reduction="none"),
            "ssim": ssim(images, targets, reduction="none"),
            "perceptual_mobilenet_v2": judged}


def _train(train, test, *, weights, strategy, loss, args) -> tuple[Any, torch.Tensor, float]:
    model = tk.replace_head(tk.load_backbone("efficientnet_lite0", weights=weights), 3, "unet",
                            task="image2image", decoder_channels=args.decoder_channels,
                            seed=args.seed)
    if strategy == "lp_ft":
        epochs = dict(probe_epochs=args.probe_epochs, epochs=args.epochs)
    else:  # the same number of epochs (and steps) in one phase
        epochs = dict(epochs=args.probe_epochs + args.epochs)
    start = time.perf_counter()
    tk.finetune(model, train, strategy=strategy, batch_size=args.batch_size, lr=args.lr,
                loss=loss, seed=args.seed, image_size=args.size, progress=False, **epochs)
    seconds = time.perf_counter() - start
    report = tk.evaluate(model, test, progress=False)
    outputs = torch.stack([p.image for p in tk.predict(model, test.data)])
    return report, outputs, seconds


def _paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    d = (a - b).double()
    return float(d.mean()), float(d.std() / math.sqrt(len(d)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    judge = PerceptualLoss("mobilenet_v2")
    rows: list[dict[str, Any]] = []
    for task in args.tasks:
        train, test = _data(task, args)
        per: dict[str, dict[str, torch.Tensor]] = {
            "baseline": _per_image(test.data, test.targets, judge)}
        baseline = None
        for name, weights, strategy, loss in MODELS:
            print(f"# {task}: {name} ... (load {_load()})", flush=True)
            report, outputs, seconds = _train(train, test, weights=weights, strategy=strategy,
                                              loss=loss, args=args)
            baseline = report.baseline
            per[name] = _per_image(outputs, test.targets, judge)
            gap = abs(float(per[name]["psnr"].mean()) - report.metrics["psnr"])
            if gap > 1e-3:  # predict's images are what evaluate scored
                raise RuntimeError(f"{task} {name}: predict's PSNR differs from evaluate's "
                                   f"by {gap:.2g} dB")
            rows.append({"task": task, "model": name, "seconds": round(seconds, 1),
                         **report.metrics,
                         "perceptual_mobilenet_v2": float(per[name]["perceptual_mobilenet_v2"]
                                                          .mean())})
        rows.append({"task": task, "model": "identity baseline", "seconds": 0.0, **baseline,
                     "perceptual_mobilenet_v2": float(per["baseline"]["perceptual_mobilenet_v2"]
                                                      .mean())})
        for name, ref in (("pretrained l1", "random l1"), ("pretrained l1", "random l1, full lr"),
                          ("pretrained l1", "baseline"), ("random l1", "baseline"),
                          ("pretrained l1+perceptual", "pretrained l1")):
            for metric in ("psnr", "ssim", "perceptual_mobilenet_v2"):
                mean, se = _paired(per[name][metric], per[ref][metric])
                rows.append({"task": task, "paired": f"{name} - {ref}", "metric": metric,
                             "mean": mean, "se": se})
    return {"rows": rows}


def _print(rows: list[dict[str, Any]]) -> None:
    print(f"{'task':17s} {'model':26s} {'PSNR':>6s} {'SSIM':>7s} {'perc.lite0':>10s} "
          f"{'perc.mnv2':>9s} {'seconds':>7s}")
    for r in rows:
        if "model" in r:
            print(f"{r['task']:17s} {r['model']:26s} {r['psnr']:6.2f} {r['ssim']:7.4f} "
                  f"{r.get('perceptual', float('nan')):10.4f} "
                  f"{r['perceptual_mobilenet_v2']:9.4f} {r['seconds']:7.1f}")
    print("# paired per-image differences, mean +- standard error over the test crops")
    for r in rows:
        if "paired" in r:
            print(f"{r['task']:17s} {r['paired']:44s} {r['metric']:24s} "
                  f"{r['mean']:+.4f} +- {r['se']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["super_resolution", "colorization"],
                        choices=["super_resolution", "colorization"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=320)
    parser.add_argument("--n-test", type=int, default=128)
    parser.add_argument("--probe-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--decoder-channels", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {_common.machine()}; load average {_load()}", flush=True)
    wall = time.perf_counter()
    result = run(args)
    result.update(config=vars(args) | {"json": str(args.json)}, machine=_common.machine(),
                  load_end=_load(), wall_seconds=round(time.perf_counter() - wall, 1))
    _print(result["rows"])
    print(f"# wall {result['wall_seconds']} s; load average at the end {result['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
