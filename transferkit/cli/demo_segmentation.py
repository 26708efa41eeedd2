"""``transferkit demo segmentation``: a pretrained encoder against random init, per pixel.

EfficientNet-Lite0 with its ImageNet weights (a pip package) under a ``unet`` decoder, trained
with ``lp_ft`` (the decoder first on the frozen encoder's cached stage maps, then everything,
the encoder at ``backbone_lr_mult`` times the decoder's learning rate), against the same
architecture from random initialisation trained in full for as many epochs in all, on two real
offline datasets:

- :func:`transferkit.datasets.nuclei`: a fluorescence image of cell nuclei (stardist's test
  image) with its true masks, tiles of the left half to train, of the right half to test;
- :func:`transferkit.datasets.animal_scenes`: Animal-MNIST silhouettes filled with textures of
  real photographs on defocused real-photo backgrounds (11 classes), test scenes from other
  photos and other silhouettes.

Both are scored on their test split: mean IoU, mean Dice and pixel accuracy from one pixel
confusion matrix. The output folder receives ``report.json``, ``overlays_<dataset>.png``
(image / truth / prediction of the pretrained model) and each pretrained model
(``<dataset>_model.safetensors`` + ``.json``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SegDemoConfig", "SegRun", "run_segmentation_demo", "format_seg_table",
           "SEG_DATASETS", "train_one"]

SEG_DATASETS = ("nuclei", "animal_scenes")
BACKBONE = "efficientnet_lite0"


@dataclass
class SegDemoConfig:
    """The segmentation demo's options.

    Attributes:
        epochs: lp_ft's fine-tuning epochs; random init trains ``probe_epochs + epochs``.
        probe_epochs: lp_ft's decoder-only epochs (on cached encoder maps).
        image_size: side of the tiles / scenes, in pixels.
        n_scenes, n_scenes_test: animal_scenes' training and test scenes.
        nuclei_stride: step of the training tiles over the nuclei image's left half.
        decoder_channels: width of the unet decoder's first block (halved per block; 64
            rather than the head's default 256: about half the time per step on the CPU).
        batch_size, lr, backbone_lr_mult: of every run (AdamW, cosine schedule).
        class_weights: ``finetune``'s ``class_weights`` for every run (``"balanced"``:
            inverse pixel frequencies; ``None``: plain cross-entropy, the demo's).
        loss: ``finetune``'s segmentation ``loss`` for every run (``"ce"``, the demo's;
            ``"dice"``, ``"ce+dice"``).
        datasets: which of :data:`SEG_DATASETS` to run.
        seed, out_dir, progress: as in the classification demo.
        tiny: a seconds-long run (for tests).
    """

    epochs: int = 3
    probe_epochs: int = 3
    image_size: int = 64
    n_scenes: int = 200
    n_scenes_test: int = 100
    nuclei_stride: int = 32
    decoder_channels: int = 64
    batch_size: int = 16
    lr: float = 3e-3
    backbone_lr_mult: float = 0.3
    class_weights: str | None = None
    loss: str = "ce"
    datasets: Sequence[str] = SEG_DATASETS
    seed: int = 0
    out_dir: str | os.PathLike = "runs/demo-segmentation"
    progress: bool = True
    tiny: bool = False

    def __post_init__(self) -> None:
        if self.tiny:
            self.epochs, self.probe_epochs, self.image_size = 1, 1, 32
            self.n_scenes, self.n_scenes_test, self.nuclei_stride = 8, 4, 32
        from .._checks import check_int
        from ..training.losses import check_loss

        for name in ("epochs", "probe_epochs", "batch_size", "n_scenes", "n_scenes_test",
                     "nuclei_stride"):
            check_int("demo segmentation", name, getattr(self, name), 1)
        check_int("demo segmentation", "image_size", self.image_size, 32, 256)

        check_loss("segmentation", self.loss)  # before any data is read
        self.datasets = tuple(self.datasets)
        unknown = [d for d in self.datasets if d not in SEG_DATASETS]
        if unknown or not self.datasets:
            raise ValueError(f"demo segmentation: datasets must be a non-empty subset of "
                             f"{list(SEG_DATASETS)}, got {list(self.datasets)}.")


@dataclass
class SegRun:
    """One trained model's test figures and training time."""

    dataset: str
    weights: str
    strategy: str
    mean_iou: float
    mean_dice: float
    pixel_accuracy: float
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def load_seg_data(name: str, cfg: SegDemoConfig):
    """``(train, test, classes, description)`` of a demo dataset."""
    from .. import datasets

    if name == "nuclei":
        split = datasets.nuclei(tile=cfg.image_size, stride=cfg.nuclei_stride, channels=3)
        desc = (f"stardist's nuclei image: {cfg.image_size} px tiles, train = left half "
                f"(stride {cfg.nuclei_stride}), test = right half")
    else:
        split = datasets.animal_scenes(n=cfg.n_scenes, n_test=cfg.n_scenes_test,
                                       size=cfg.image_size, seed=cfg.seed)
        desc = (f"animal_scenes: {cfg.n_scenes} training / {cfg.n_scenes_test} test scenes, "
                f"{cfg.image_size} px, 11 classes, test photos and silhouettes disjoint")
    train, test = split.train, split.test
    if cfg.tiny:  # a few images of each split
        from torch.utils.data import Subset

        train, test = Subset(train, range(min(8, len(train)))), Subset(test, range(min(4, len(test))))
    return train, test, list(split.classes), desc


def train_one(name: str, pretrained: bool, cfg: SegDemoConfig, train, test, classes, say):
    """One side of the demo on ``name``: the ImageNet encoder with lp_ft (``pretrained``) or
    random init trained in full for as many epochs; scored on ``test``. Returns ``(SegRun,
    model, report)``; ``say`` gets the progress lines."""
    from ..evaluate import evaluate
    from ..finetune import finetune
    from ..load_backbone import load_backbone
    from ..replace_head import replace_head

    backbone = load_backbone(BACKBONE, weights="DEFAULT" if pretrained else None)
    model = replace_head(backbone, len(classes), head="unet", class_names=classes,
                         seed=cfg.seed, decoder_channels=cfg.decoder_channels)
    common = {"image_size": cfg.image_size, "batch_size": cfg.batch_size, "lr": cfg.lr,
              "seed": cfg.seed, "progress": cfg.progress, "num_workers": 0, "augment": False,
              "class_weights": cfg.class_weights, "loss": cfg.loss}
    if pretrained:
        options = {**common, "strategy": "lp_ft", "epochs": cfg.epochs,
                   "probe_epochs": cfg.probe_epochs, "backbone_lr_mult": cfg.backbone_lr_mult}
    else:  # the same number of epochs in all, everything trained from the start
        options = {**common, "strategy": "full", "epochs": cfg.probe_epochs + cfg.epochs}
    say(f"{name}, {'ImageNet' if pretrained else 'random init'}: {options['strategy']}, "
        f"{options['epochs']} epoch(s){' after the probe' if pretrained else ''} ...")
    t0 = time.perf_counter()
    history = finetune(model, train, **options)
    seconds = time.perf_counter() - t0
    report = evaluate(model, test, progress=False, batch_size=32)
    run = SegRun(name, "ImageNet" if pretrained else "none (random init)", options["strategy"],
                 float(report.mean_iou), float(report.mean_dice), float(report.pixel_accuracy),
                 seconds, history.to_list(), report.to_dict())
    say(f"{name}, {run.weights}: test mIoU {run.mean_iou:.4f}, Dice {run.mean_dice:.4f}, "
        f"pixel accuracy {run.pixel_accuracy:.4f}, {seconds:.0f} s")
    return run, model, report


def format_seg_table(runs: Sequence[SegRun]) -> str:
    """The table the segmentation demo prints (also in ``report.json``)."""
    head = (f"{'dataset':<15}{'weights':<20}{'strategy':<10}{'mIoU':>8}{'Dice':>8}"
            f"{'pixel acc':>11}{'train s':>9}")
    rows = [head, "-" * len(head)]
    for r in runs:
        rows.append(f"{r.dataset:<15}{r.weights:<20}{r.strategy:<10}{r.mean_iou:>8.4f}"
                    f"{r.mean_dice:>8.4f}{r.pixel_accuracy:>11.4f}{r.train_seconds:>9.1f}")
    return "\n".join(rows)


def run_segmentation_demo(config: SegDemoConfig | None = None, *,
                          say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the segmentation demo (see the module docstring); returns ``report.json``'s dict.

    Example:
        >>> from transferkit.cli.demo_segmentation import SegDemoConfig, run_segmentation_demo
        >>> out = run_segmentation_demo(SegDemoConfig(tiny=True, out_dir="runs/t", progress=False))
        >>> sorted(out["results"])  # doctest: +SKIP
    """
    from ..errors import MissingDependencyError
    from ..save import save

    cfg = config or SegDemoConfig()
    start = time.perf_counter()
    if say is None:
        def say(msg: str) -> None:
            if cfg.progress:
                print(f"[demo segmentation {time.perf_counter() - start:5.0f} s] {msg}",
                      file=sys.stderr, flush=True)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[SegRun] = []
    files: dict[str, str] = {}
    data_info: dict[str, Any] = {}
    for name in cfg.datasets:
        train, test, classes, desc = load_seg_data(name, cfg)
        data_info[name] = {"description": desc, "n_train": len(train), "n_test": len(test),
                           "classes": classes}
        say(f"{desc}: {len(train)} training, {len(test)} test images")
        for pretrained in (True, False):
            run, model, report = train_one(name, pretrained, cfg, train, test, classes, say)
            runs.append(run)
            if pretrained:
                w, c = save(model, out / f"{name}_model")
                files[f"{name}_model"], files[f"{name}_model_config"] = str(w), str(c)
                try:
                    report.plot_overlays(out / f"overlays_{name}.png", n=4)
                    files[f"{name}_overlays"] = str(out / f"overlays_{name}.png")
                except (ImportError, MissingDependencyError):
                    say('overlays skipped: matplotlib is missing (pip install "transferkit[plot]")')
            del model
    result = {
        "title": "transferkit demo segmentation: EfficientNet-Lite0 (ImageNet) + unet, lp_ft, "
                 "against random init on the same epochs",
        "config": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path)
                       else v) for k, v in asdict(cfg).items()} | {"out_dir": str(cfg.out_dir)},
        "data": data_info, "table": format_seg_table(runs).splitlines(),
        "results": [asdict(r) for r in runs], "files": files,
        "wall_seconds": time.perf_counter() - start,
    }
    files["report"] = str(out / "report.json")
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
