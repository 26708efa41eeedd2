"""``transferkit demo``: transfer learning against training from scratch, on one small budget.

EfficientNet-Lite0 pretrained on ImageNet (Google's weights, shipped by a pip package) is
adapted to Animal-MNIST (10,000 grey 28x28 silhouettes of 10 animals, also a pip package), in
three ways that share the data, the image size, the optimiser and the number of epochs through
the backbone:

- ``linear_probe``: the pretrained backbone frozen, a new linear head trained on its features
  (the backbone runs once per image: the features are cached);
- ``lp_ft``: that linear probe first, then the whole network fine-tuned, the backbone at 0.3
  times the head's learning rate (Kumar et al. 2022; 0.3 rather than ``finetune``'s default
  0.1 because silhouettes are far from ImageNet: the comparison is in docs/benchmarks.md,
  "Measurements behind rules in the code");
- ``scratch``: the same architecture randomly initialised, everything trained.

Each model is scored on the package's held-out test images (the 80/20 split of
:func:`transferkit.datasets.animal_mnist`, drawn with seed 0); the validation images that
choose the model to save are a seeded stratified part of the training images. Everything
runs offline. The output folder receives ``report.json``, ``learning_curves.png``,
``confusion_matrix.png`` and the chosen model (``model.safetensors`` + ``model.json``, read
back with :func:`transferkit.load`).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._checks import check_int

__all__ = ["DemoConfig", "DemoResult", "StrategyResult", "run_demo", "format_table",
           "STRATEGIES"]

#: The three ways the demo trains, in the order they run.
STRATEGIES = ("linear_probe", "lp_ft", "scratch")
BACKBONE = "efficientnet_lite0"


@dataclass
class DemoConfig:
    """The demo's options (the CLI's ``transferkit demo`` flags).

    Attributes:
        epochs: epochs through the backbone for ``lp_ft``'s fine-tuning and for ``scratch``;
            ``linear_probe`` trains its head for ``probe_epochs + epochs`` epochs on cached
            features.
        probe_epochs: at most this many epochs of ``lp_ft``'s linear probe (it stops when the
            training loss stops improving).
        image_size: side of the square crop the network sees (the 28x28 images are upscaled).
        n_per_class: training images per class (at most 800); ``None`` keeps all 8,000.
        n_per_class_test: test images per class (at most 200); ``None`` keeps all 2,000.
        val_fraction: part of the training images held out for validation (stratified, seeded).
        batch_size, lr: of every run (AdamW, cosine schedule).
        backbone_lr_mult: ``lp_ft``'s backbone learning rate as a fraction of ``lr``.
        augment: random resized crops and flips in the runs that train the backbone.
        seed: seed of the subsets, the validation split and the training runs.
        strategies: which of :data:`STRATEGIES` to run.
        out_dir: where the report, the figures and the model go.
        progress: progress bars and one line per finished step.
        tiny: a seconds-long run for tests (a few images, 32 px, one epoch).
    """

    epochs: int = 2
    probe_epochs: int = 5
    image_size: int = 64
    n_per_class: int | None = None
    n_per_class_test: int | None = None
    val_fraction: float = 0.1
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr_mult: float = 0.3
    augment: bool = False
    seed: int = 0
    strategies: Sequence[str] = STRATEGIES
    out_dir: str | os.PathLike = "runs/demo"
    progress: bool = True
    tiny: bool = False

    def __post_init__(self) -> None:
        if self.tiny:
            self.epochs, self.probe_epochs, self.image_size = 1, 1, 32
            self.n_per_class = self.n_per_class or 4
            self.n_per_class_test = self.n_per_class_test or 3
            self.val_fraction = 0.25
        for name in ("epochs", "probe_epochs", "image_size", "batch_size"):
            check_int("demo", name, getattr(self, name), 32 if name == "image_size" else 1)
        for name, low, high in (("n_per_class", 2, 800), ("n_per_class_test", 1, 200)):
            if getattr(self, name) is not None:  # Animal-MNIST's images per class
                check_int("demo", name, getattr(self, name), low, high)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"demo: val_fraction must be in (0, 1), got {self.val_fraction}.")
        if not self.lr > 0 or not self.backbone_lr_mult > 0:
            raise ValueError(f"demo: lr and backbone_lr_mult must be > 0, got {self.lr} and "
                             f"{self.backbone_lr_mult}.")
        self.strategies = tuple(self.strategies)
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise ValueError(f"demo: strategies must be a non-empty subset of "
                             f"{list(STRATEGIES)}, got {list(self.strategies)}.")


@dataclass
class StrategyResult:
    """One strategy's run: its test figures, its training time and its history."""

    strategy: str
    weights: str
    test_accuracy: float
    macro_f1: float
    val_accuracy: float | None
    train_seconds: float
    train_images_per_second: float
    test_images_per_second: float | None
    trainable_params: int
    history: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    """Everything the demo measured; ``report.json`` is :meth:`to_dict`."""

    config: dict[str, Any]
    data: dict[str, Any]
    results: list[StrategyResult]
    best: str
    wall_seconds: float
    files: dict[str, str]
    environment: dict[str, Any]

    def result(self, strategy: str) -> StrategyResult:
        return next(r for r in self.results if r.strategy == strategy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": "transferkit demo: EfficientNet-Lite0 (ImageNet) on Animal-MNIST",
            "config": self.config, "data": self.data, "best": self.best,
            "best_rule": "highest validation accuracy after training",
            "wall_seconds": self.wall_seconds, "files": self.files,
            "environment": self.environment,
            "table": format_table(self).splitlines(),
            "results": {r.strategy: asdict(r) for r in self.results},
        }


# -- the data ---------------------------------------------------------------------------------
def _load_data(cfg: DemoConfig):
    from ..data.sources import stratified_split
    from ..datasets import animal_mnist

    split = animal_mnist(n_per_class=cfg.n_per_class, n_per_class_test=cfg.n_per_class_test,
                         seed=cfg.seed)
    train, val = stratified_split(split.train, cfg.val_fraction, seed=cfg.seed)
    info = {
        "dataset": "animal-mnist 0.4 (pip package; 10 classes, grey 28x28)",
        "classes": list(split.classes),
        "split": ("test images: the package's 80/20 stratified split (transferkit.datasets."
                  "animal_mnist, split_seed=0); validation images: a stratified "
                  f"{cfg.val_fraction:.0%} of the training images (seed {cfg.seed})"),
        "n_train": len(train), "n_val": len(val), "n_test": len(split.test),
        "n_per_class": cfg.n_per_class, "n_per_class_test": cfg.n_per_class_test,
    }
    return train, val, split.test, list(split.classes), info


# -- one strategy -----------------------------------------------------------------------------
def _seeded_backbone(name: str, weights: str | None, seed: int):
    """Backbone ``name``, a random init drawn from ``seed``: the same weights in any process,
    whatever ran before (the global random state is left as it was)."""
    from ..load_backbone import load_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return load_backbone(name, weights=weights)


def _build(strategy: str, classes: list[str], seed: int):
    """The strategy's model, its random weights (the head; scratch's backbone) drawn from
    ``seed``."""
    from ..replace_head import replace_head

    backbone = _seeded_backbone(BACKBONE, None if strategy == "scratch" else "DEFAULT", seed)
    return replace_head(backbone, len(classes), class_names=classes, seed=seed)


def _options(strategy: str, cfg: DemoConfig) -> dict[str, Any]:
    # channels_last given: EfficientNet-Lite0 trains faster in it on the CPU too (see
    # docs/benchmarks.md, "Measurements behind rules in the code"), so the demo skips the timing.
    common = {"image_size": cfg.image_size, "batch_size": cfg.batch_size, "lr": cfg.lr,
              "seed": cfg.seed, "progress": cfg.progress, "num_workers": 0,
              "channels_last": True}
    if strategy == "linear_probe":  # cached features: no augmentation, many cheap epochs
        return {**common, "strategy": "linear_probe", "augment": False,
                "epochs": cfg.probe_epochs + cfg.epochs}
    if strategy == "lp_ft":
        return {**common, "strategy": "lp_ft", "epochs": cfg.epochs,
                "probe_epochs": cfg.probe_epochs, "backbone_lr_mult": cfg.backbone_lr_mult,
                "augment": cfg.augment, "cache_views": 0 if cfg.augment else 1}
    return {**common, "strategy": "full", "epochs": cfg.epochs, "augment": cfg.augment}


def _run_strategy(strategy: str, cfg: DemoConfig, train, val, test, classes, say):
    from ..evaluate import evaluate
    from ..finetune import finetune

    model = _build(strategy, classes, cfg.seed)
    options = _options(strategy, cfg)
    cached = " (the frozen backbone runs once per image: features cached first)" if (
        strategy != "scratch") else ""
    say(f"{strategy}: training ({_describe(options)}){cached} ...")
    t0 = time.perf_counter()
    history = finetune(model, train, val, **options)
    train_seconds = time.perf_counter() - t0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report = evaluate(model, test, progress=cfg.progress, batch_size=128)
    seen = sum(len(train) for _ in history)
    result = StrategyResult(
        strategy=strategy,
        weights="none (random init)" if strategy == "scratch" else "ImageNet",
        test_accuracy=float(report.accuracy), macro_f1=float(report.macro_f1),
        val_accuracy=history["val_accuracy"][-1] if len(history) else None,
        train_seconds=train_seconds, train_images_per_second=seen / train_seconds,
        test_images_per_second=report.images_per_second, trainable_params=trainable,
        history=history.to_list(), report=report.to_dict(),
    )
    say(f"{strategy}: test accuracy {result.test_accuracy:.4f}, macro F1 "
        f"{result.macro_f1:.4f}, {train_seconds:.0f} s of training")
    return result, model, report


def _describe(options: dict[str, Any]) -> str:
    keys = ("strategy", "epochs", "probe_epochs", "image_size", "lr", "backbone_lr_mult",
            "augment")
    return ", ".join(f"{k}={options[k]}" for k in keys if k in options)


# -- outputs ----------------------------------------------------------------------------------
def format_table(result: DemoResult) -> str:
    """The comparison table the demo prints (also stored in ``report.json``)."""
    head = (f"{'strategy':<14}{'weights':<20}{'test acc':>9}{'macro F1':>10}{'train s':>9}"
            f"{'train img/s':>13}{'test img/s':>12}")
    rows = [head, "-" * len(head)]
    for r in result.results:
        mark = " *" if r.strategy == result.best else ""
        test_ips = f"{r.test_images_per_second:.0f}" if r.test_images_per_second else "-"
        rows.append(f"{r.strategy:<14}{r.weights:<20}{r.test_accuracy:>9.4f}{r.macro_f1:>10.4f}"
                    f"{r.train_seconds:>9.1f}{r.train_images_per_second:>13.0f}"
                    f"{test_ips:>12}{mark}")
    return "\n".join(rows)


def plot_learning_curves(results: Sequence[StrategyResult], path: str | os.PathLike) -> None:
    """Training loss and validation accuracy per epoch, one line per strategy, in one figure."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        epochs = [h["epoch"] + 1 for h in r.history]
        ax_loss.plot(epochs, [h["train_loss"] for h in r.history], marker="o", label=r.strategy)
        ax_acc.plot(epochs, [h.get("val_accuracy") for h in r.history], marker="o",
                    label=r.strategy)
        probe = [h["epoch"] + 1 for h in r.history if h.get("phase") == "probe"]
        if r.strategy == "lp_ft" and probe:
            ax_acc.axvline(max(probe) + 0.5, color="grey", linestyle=":", linewidth=1)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _environment() -> dict[str, Any]:
    try:
        load = list(os.getloadavg())
    except OSError:  # not on every platform
        load = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "load_average_at_end": load}


def _write_outputs(result: DemoResult, best_model, best_report, out: Path, start: float,
                   say) -> None:
    from ..errors import MissingDependencyError
    from ..save import save

    weights_path, config_path = save(best_model, out / "model")
    result.files.update({"model": str(weights_path), "model_config": str(config_path)})
    try:
        plot_learning_curves(result.results, out / "learning_curves.png")
        best_report.plot_confusion_matrix(out / "confusion_matrix.png", normalize="true")
        result.files.update({"learning_curves": str(out / "learning_curves.png"),
                             "confusion_matrix": str(out / "confusion_matrix.png")})
    except (ImportError, MissingDependencyError):
        say('figures skipped: matplotlib is missing (pip install "transferkit[plot]")')
    result.files["report"] = str(out / "report.json")
    result.wall_seconds = time.perf_counter() - start
    (out / "report.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n",
                                     encoding="utf-8")


# -- the whole demo ---------------------------------------------------------------------------
def run_demo(config: DemoConfig | None = None, *,
             say: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demo (see the module docstring) and write its outputs to ``config.out_dir``.

    Args:
        config: the options; ``DemoConfig()`` is the README's run (its duration is in
            docs/cli.md), ``DemoConfig(tiny=True)`` a seconds-long one.
        say: where progress lines go (default: stderr when ``config.progress``).

    Returns:
        A :class:`DemoResult`; :func:`format_table` prints its table.

    Example:
        >>> from transferkit.demo import DemoConfig, run_demo
        >>> result = run_demo(DemoConfig(tiny=True, out_dir="runs/tiny", progress=False))
        >>> [r.strategy for r in result.results]
        ['linear_probe', 'lp_ft', 'scratch']
    """
    cfg = config or DemoConfig()
    if say is None:
        def say(msg: str) -> None:
            if cfg.progress:
                print(f"[demo {time.perf_counter() - start:5.0f} s] {msg}", file=sys.stderr,
                      flush=True)
    start = time.perf_counter()
    train, val, test, classes, info = _load_data(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say(f"animal-mnist: {info['n_train']} training, {info['n_val']} validation, "
        f"{info['n_test']} test images; {BACKBONE} at {cfg.image_size} px")
    results, best = [], None
    for strategy in cfg.strategies:
        res, model, report = _run_strategy(strategy, cfg, train, val, test, classes, say)
        results.append(res)
        if best is None or (res.val_accuracy or 0) > (best[0].val_accuracy or 0):
            best = (res, model, report)
        del model
    config_dict = {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                   for k, v in asdict(cfg).items()}
    config_dict["out_dir"] = str(cfg.out_dir)
    result = DemoResult(config_dict, info, results, best[0].strategy, 0.0, {}, _environment())
    _write_outputs(result, best[1], best[2], out, start, say)
    say(f"saved {best[0].strategy} (best validation accuracy) and the report to {out}/")
    return result
