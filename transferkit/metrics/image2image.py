"""Image-to-image figures: PSNR, SSIM and perceptual distance, each beside its baseline.

Every figure is computed per image and averaged over images (never over pixels of the whole
set), for the model's output and for the **identity baseline**: the degraded input itself,
which is what a model that learnt nothing would return (for super-resolution, the bicubic
upsampling; for colourisation, the grey image). Outputs are clamped to ``[0, 1]`` here, and
only here: the model predicts in the target's pixel space and is trained unclamped.

- PSNR and SSIM: :func:`transferkit.metrics.image.psnr` / :func:`~transferkit.metrics.image.
  ssim` (scikit-image's definitions, data range 1);
- perceptual distance: :class:`transferkit.training.perceptual.PerceptualLoss` (LPIPS-style
  distance on a frozen pretrained backbone, ``efficientnet_lite0`` by default); lower is
  closer;
- l1: mean absolute pixel error.

:class:`Image2ImageMeter` adds batches; its sums are all a pass keeps (and a few examples for
the panels), so no pass holds every image in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import MissingDependencyError
from .image import psnr, ssim

__all__ = ["Image2ImageMeter", "Image2ImageReport", "plot_panels", "METRICS"]

#: The figures of a report, and whether higher is better.
METRICS = {"psnr": True, "ssim": True, "perceptual": False, "l1": False}


def _hwc(x: Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] -> ``(H, W, 3)`` float32 for drawing (grey repeated)."""
    x = x.detach().float().clamp(0, 1).cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy().astype(np.float32)


def as_baseline(inputs: Tensor, size: Sequence[int], channels: int) -> Tensor:
    """The identity baseline of ``inputs`` for targets of ``size`` and ``channels``: the input,
    resized bicubically when its size differs, grey repeated, clamped to [0, 1]."""
    x = inputs.float()
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False)
    if x.shape[1] != channels:
        x = x[:, :1].expand(-1, channels, -1, -1) if channels != 1 else x.mean(1, keepdim=True)
    return x.clamp(0, 1)


class Image2ImageMeter:
    """Per-image sums of every figure over a pass, for the model and the baseline.

    Args:
        perceptual: the :class:`~transferkit.training.perceptual.PerceptualLoss` that scores
            perceptual distance (``None``: not reported).
        examples: how many ``(input, target, output)`` triples to keep for the panels.
        mean, std: the normalisation of the model's inputs, undone to get the degraded input
            back in pixel space (the defaults: inputs given in pixel space).

    Example:
        >>> import torch
        >>> m = Image2ImageMeter()
        >>> x = torch.rand(2, 3, 16, 16)
        >>> m.update(x, x, x * 0.5)
        >>> r = m.report()
        >>> float(r.ssim), r.baseline["ssim"] < 1
        (1.0, True)
    """

    def __init__(self, perceptual: Any = None, *, examples: int = 4,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)) -> None:
        self.perceptual = perceptual
        self.max_examples = examples
        self.mean, self.std = torch.tensor(mean).float(), torch.tensor(std).float()
        self.sums = {k: 0.0 for k in self._keys()}
        self.base_sums = {k: 0.0 for k in self._keys()}
        self.n = 0
        self.n_baseline = 0
        self.examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _keys(self) -> list[str]:
        return [k for k in METRICS if k != "perceptual" or self.perceptual is not None]

    def _figures(self, out: Tensor, target: Tensor) -> dict[str, Tensor]:
        fig = {"psnr": psnr(out, target, reduction="none"),
               "ssim": ssim(out, target, reduction="none"),
               "l1": (out - target).abs().mean(dim=(1, 2, 3))}
        if self.perceptual is not None:
            self.perceptual.to(out.device)  # a no-op once it is there
            fig["perceptual"] = self.perceptual.distance(out, target)
        return fig

    @torch.no_grad()
    def update(self, outputs: Tensor, targets: Tensor, images: Tensor | None = None) -> None:
        """Add a batch: ``outputs`` ``(N, C, h, w)`` in the targets' pixel space (resized to
        the targets' size when it differs), ``targets`` ``(N, C, H, W)`` in ``[0, 1]`` (or
        ``uint8``), and the model's ``images`` (normalised with ``mean``/``std``) for the
        baseline."""
        if isinstance(targets, list):  # targets of different sizes: one at a time
            for i, t in enumerate(targets):
                self.update(outputs[i:i + 1], t[None],
                            None if images is None else images[i:i + 1])
            return
        target = targets.float().div(255) if targets.dtype == torch.uint8 else targets.float()
        out = outputs.float()
        if out.ndim != 4 or out.shape[:2] != target.shape[:2]:
            raise ValueError(f"evaluate: outputs {tuple(out.shape)} and target images "
                             f"{tuple(target.shape)} must agree in batch size and channels.")
        if out.shape[-2:] != target.shape[-2:]:
            out = F.interpolate(out, size=tuple(target.shape[-2:]), mode="bicubic",
                                align_corners=False)
        out = out.clamp(0, 1)
        for k, v in self._figures(out, target).items():
            self.sums[k] += float(v.double().sum())
        self.n += out.shape[0]
        base = None
        if images is not None:
            x = images.detach().float().cpu()
            c = x.shape[1]
            x = x * self.std.expand(c)[:, None, None] + self.mean.expand(c)[:, None, None]
            base = as_baseline(x.to(target.device), target.shape[-2:], target.shape[1])
            for k, v in self._figures(base, target).items():
                self.base_sums[k] += float(v.double().sum())
            self.n_baseline += out.shape[0]
        for i in range(min(self.max_examples - len(self.examples), out.shape[0])):
            shown = base[i] if base is not None else torch.zeros_like(target[i])
            self.examples.append((_hwc(shown), _hwc(target[i]), _hwc(out[i])))

    def all_reduce(self, dist: Any) -> None:
        """Sum every process's sums (``dist``: a :class:`~transferkit.distributed.DistContext`)."""
        if getattr(dist, "is_distributed", False):
            keys = list(self.sums)
            flat = dist.sum([self.sums[k] for k in keys] + [self.base_sums[k] for k in keys]
                            + [float(self.n), float(self.n_baseline)])
            self.sums = dict(zip(keys, flat[:len(keys)]))
            self.base_sums = dict(zip(keys, flat[len(keys):2 * len(keys)]))
            self.n, self.n_baseline = round(flat[-2]), round(flat[-1])

    def report(self, **extra: Any) -> "Image2ImageReport":
        """The :class:`Image2ImageReport` of everything added (``extra``: its other fields)."""
        metrics = {k: v / self.n if self.n else float("nan") for k, v in self.sums.items()}
        baseline = ({k: v / self.n_baseline for k, v in self.base_sums.items()}
                    if self.n_baseline else {})
        name = getattr(getattr(self.perceptual, "net", None), "name", None)
        return Image2ImageReport(task="image2image", n_samples=self.n, metrics=metrics,
                                 baseline=baseline, perceptual_backbone=name,
                                 examples=list(self.examples), **extra)


@dataclass(eq=False)
class Image2ImageReport:
    """Figures of an image-to-image pass (from :func:`transferkit.evaluate`).

    Attributes:
        task: ``"image2image"``.
        n_samples: images evaluated.
        metrics: the model's ``psnr`` (dB), ``ssim``, ``perceptual`` (distance, lower is
            closer) and ``l1``, each the mean over images; also attributes (``report.psnr``).
        baseline: the same figures for the identity baseline (the degraded input); empty
            when the inputs were not known.
        perceptual_backbone: the network of the perceptual distance, or ``None``.
        seconds, images_per_second: wall time of the pass (filled by ``evaluate``).
        examples: a few ``(input, target, output)`` ``(H, W, 3)`` float arrays in [0, 1] for
            :meth:`plot_panels` (not saved by :meth:`to_dict`).
    """

    task: str
    n_samples: int
    metrics: dict[str, float]
    baseline: dict[str, float] = field(default_factory=dict)
    perceptual_backbone: str | None = None
    seconds: float | None = None
    images_per_second: float | None = None
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list,
                                                                      repr=False)

    def __getattr__(self, name: str) -> float:
        metrics = self.__dict__.get("metrics")
        if metrics is not None and name in metrics:
            return metrics[name]
        raise AttributeError(
            f"Image2ImageReport has no attribute {name!r}. Its metrics: "
            f"{sorted(metrics or {})}; the baseline's: report.baseline."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe floats, ints and strings (a non-finite figure becomes ``None``)."""
        return {
            "task": self.task, "n_samples": int(self.n_samples),
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "baseline": {k: _json_float(v) for k, v in self.baseline.items()},
            "perceptual_backbone": self.perceptual_backbone,
            "seconds": _json_float(self.seconds),
            "images_per_second": _json_float(self.images_per_second),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Image2ImageReport":
        """Rebuild a report from :meth:`to_dict` output (``None`` figures come back as NaN)."""
        def floats(m: Mapping[str, Any]) -> dict[str, float]:
            return {k: float("nan") if v is None else float(v) for k, v in m.items()}

        return cls(task=d["task"], n_samples=int(d["n_samples"]), metrics=floats(d["metrics"]),
                   baseline=floats(d.get("baseline") or {}),
                   perceptual_backbone=d.get("perceptual_backbone"),
                   seconds=d.get("seconds"), images_per_second=d.get("images_per_second"))

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def __str__(self) -> str:
        head = f"Image2ImageReport: {self.n_samples:,} images"
        if self.seconds is not None:
            head += f" ({self.seconds:.2f} s, {self.images_per_second or 0:,.1f} images/s)"
        lines = [head, f"  {'':<12}{'model':>10}{'baseline':>10}   (baseline: the degraded "
                       "input itself)"]
        notes = {"psnr": "dB, higher is better", "ssim": "higher is better",
                 "perceptual": f"lower is better ({self.perceptual_backbone} features)",
                 "l1": "lower is better"}
        for k, v in self.metrics.items():
            b = self.baseline.get(k)
            lines.append(f"  {k:<12}{v:>10.4f}{'-' if b is None else format(b, '.4f'):>10}"
                         f"   {notes.get(k, '')}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        m = self.metrics
        return (f"Image2ImageReport(n_samples={self.n_samples}, psnr={m['psnr']:.4g}, "
                f"ssim={m['ssim']:.4g})")

    def plot_panels(self, path: str | Path | None = None, *, n: int = 4) -> Any:
        """Input (the baseline) / target / output for up to ``n`` kept examples, one row each.

        Needs matplotlib (``pip install "transferkit[plot]"``). Returns the figure.

        Example:
            >>> report.plot_panels("runs/x/panels.png")  # doctest: +SKIP
        """
        return plot_panels(self.examples[:n], path)


def plot_panels(examples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                path: str | Path | None = None, *,
                titles: Sequence[str] = ("input", "target", "output")) -> Any:
    """Draw ``(input, target, output)`` triples of ``(H, W, 3)`` arrays as rows; returns the
    figure (written to ``path`` when given)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            'plot_panels needs matplotlib: pip install "transferkit[plot]"') from None
    if not examples:
        raise ValueError("plot_panels: no examples to draw (evaluate keeps some: "
                         "evaluate(..., examples=4)).")
    cols = len(examples[0])
    fig, axes = plt.subplots(len(examples), cols, figsize=(3 * cols, 3 * len(examples)),
                             squeeze=False)
    for row, triple in zip(axes, examples):
        for ax, title, image in zip(row, titles, triple):
            ax.imshow(np.clip(image, 0, 1))
            ax.set_title(title)
            ax.axis("off")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


def _json_float(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None
