"""``transferkit demo image2image``: transfer to image generation, measured on real photographs.

On both built-in image-to-image tasks (``super_resolution`` x4 and ``colorization``, 64 px crops
of real photos shipped in packages, test crops from regions no training crop touches), the same
unet decoder is trained on the same budget (lp_ft, the same epochs, batch and learning rate) on:

- EfficientNet-Lite0 with its ImageNet weights (offline, from a pip package), loss l1;
- the same encoder from random initialisation, loss l1;
- the pretrained encoder with loss l1+perceptual (the frozen pretrained Lite0 as the loss);

and each is scored beside the identity baseline (the degraded input itself: bicubic upsampling
for super-resolution, the grey image for colourisation). Writes ``report.json`` and one panel
figure per task (input / outputs / target) to ``out_dir``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["I2IDemoConfig", "run_image2image_demo"]


@dataclass
class I2IDemoConfig:
    """Options of the image-to-image demo (the defaults are what docs/image2image.md quotes)."""

    tasks: tuple[str, ...] = ("super_resolution", "colorization")
    size: int = 64
    n_train: int = 128
    n_test: int = 32
    epochs: int = 2
    probe_epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    decoder_channels: int = 64
    perceptual: bool = True
    seed: int = 0
    out_dir: str = "runs/demo-image2image"
    tiny: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.tiny:  # seconds, for the tests
            self.size, self.n_train, self.n_test = 32, 16, 8
            self.epochs, self.probe_epochs, self.batch_size = 1, 1, 8
            self.decoder_channels = 16


def _data(task: str, cfg: I2IDemoConfig):
    from .. import datasets

    if task == "super_resolution":
        return datasets.super_resolution(scale=4, size=cfg.size, n=cfg.n_train,
                                         n_test=cfg.n_test, seed=cfg.seed)
    return datasets.colorization(size=cfg.size, n=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed)


def _run(task: str, train, test, *, weights: str | None, loss: str, cfg: I2IDemoConfig):
    from ..evaluate import evaluate
    from ..finetune import finetune
    from ..load_backbone import load_backbone
    from ..replace_head import replace_head

    model = replace_head(load_backbone("efficientnet_lite0", weights=weights), 3, "unet",
                         task="image2image", decoder_channels=cfg.decoder_channels,
                         seed=cfg.seed)
    start = time.perf_counter()
    finetune(model, train, epochs=cfg.epochs, probe_epochs=cfg.probe_epochs,
             batch_size=cfg.batch_size, lr=cfg.lr, loss=loss, seed=cfg.seed,
             image_size=cfg.size, progress=cfg.progress)
    seconds = time.perf_counter() - start
    report = evaluate(model, test, progress=False, examples=3)
    return model, report, seconds


def run_image2image_demo(cfg: I2IDemoConfig | None = None) -> dict[str, Any]:
    """Run the demo; returns ``{"rows", "table", "files", "wall_seconds", "config"}``."""
    from ..metrics.image2image import plot_panels

    cfg = cfg or I2IDemoConfig()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    torch.manual_seed(cfg.seed)
    runs = [("pretrained lite0 + unet, l1", "DEFAULT", "l1"),
            ("random init + unet, l1", None, "l1")]
    if cfg.perceptual:
        runs.append(("pretrained lite0 + unet, l1+perceptual", "DEFAULT", "l1+perceptual"))
    rows: list[dict[str, Any]] = []
    files: dict[str, str] = {}
    for task in cfg.tasks:
        train, test = _data(task, cfg)
        panels: list[list[Any]] = []
        baseline = None
        for name, weights, loss in runs:
            if cfg.progress:
                print(f"demo image2image: {task}: {name} ...", flush=True)
            _, report, seconds = _run(task, train, test, weights=weights, loss=loss, cfg=cfg)
            baseline = report.baseline
            rows.append({"task": task, "model": name, "seconds": seconds, **report.metrics})
            for i, (inp, target, output) in enumerate(report.examples):
                if len(panels) <= i:
                    panels.append([inp, target])
                panels[i].insert(-1, output)
        rows.append({"task": task, "model": "identity baseline (the degraded input)",
                     "seconds": 0.0, **(baseline or {})})
        titles = ["input"] + [n.split(" + ")[0] + (" +perc" if "perc" in n else "")
                              for n, _, _ in runs] + ["target"]
        path = out / f"panels_{task}.png"
        plot_panels([tuple(p) for p in panels], path, titles=titles)
        files[f"panels_{task}"] = str(path)
    table = format_table(rows)
    result = {"rows": rows, "table": table, "files": files, "config": asdict(cfg),
              "wall_seconds": time.perf_counter() - wall}
    path = out / "report.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    result["files"]["report"] = str(path)
    return result


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """The demo's rows as text lines: task, model, PSNR, SSIM, perceptual distance, seconds."""
    lines = [f"{'task':18s} {'model':42s} {'PSNR':>7s} {'SSIM':>7s} {'percep.':>8s} "
             f"{'seconds':>8s}"]
    for r in rows:
        lines.append(f"{r['task']:18s} {r['model']:42s} {r.get('psnr', float('nan')):7.2f} "
                     f"{r.get('ssim', float('nan')):7.4f} "
                     f"{r.get('perceptual', float('nan')):8.4f} {r['seconds']:8.1f}")
    return lines
