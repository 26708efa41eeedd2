"""Segmentation figures from one pixel confusion matrix, accumulated over batches.

:class:`ConfusionMeter` adds each batch's pixels into a ``(K, K)`` matrix with one
``torch.bincount`` (rows: true class, columns: predicted class); pixels whose truth is
``ignore_index`` are dropped. Every figure of :class:`SegmentationReport` comes from that
matrix, so no pass ever holds all pixels in memory:

- pixel accuracy: ``trace / total``;
- IoU of class ``c``: ``tp / (tp + fp + fn)``; Dice: ``2 tp / (2 tp + fp + fn)``; a class that
  appears neither in the truth nor in the prediction has no IoU or Dice (``NaN``, left out of
  the means);
- mean IoU / mean Dice: the mean over classes that have one;
- frequency-weighted IoU: ``sum_c (truth pixels of c / total) * IoU_c``.
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

__all__ = ["class_map", "ConfusionMeter", "SegmentationMeter", "SegmentationReport", "segmentation_report",
           "plot_overlays",
           "DEFAULT_IGNORE_INDEX", "palette"]

#: The label of pixels that are not scored or trained on (VOC's convention).
DEFAULT_IGNORE_INDEX = 255


def resize_logits(logits: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear upsampling of ``(N, K, h, w)`` logits to ``size`` (a no-op when equal)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def class_map(logits: Tensor) -> Tensor:
    """``(N, K, H, W)`` logits -> ``(N, H, W)`` predicted classes. ``max(1).indices`` rather
    than ``argmax(1)``: the same classes, faster on the CPU for this layout (see
    docs/benchmarks.md, "Measurements behind rules in the code")."""
    return logits.max(1).indices


class ConfusionMeter:
    """The pixel confusion matrix ``(K, K)`` of a pass, batch by batch.

    Args:
        num_classes: ``K``.
        ignore_index: truth label of pixels left out (``None``: none).

    Example:
        >>> import torch
        >>> m = ConfusionMeter(2)
        >>> m.update(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 255]]))
        >>> m.matrix.tolist()
        [[1, 1], [0, 1]]
    """

    def __init__(self, num_classes: int, ignore_index: int | None = DEFAULT_IGNORE_INDEX
                 ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.n_samples = 0

    def update(self, pred: Tensor, truth: Tensor) -> None:
        """Add predicted class indices and true labels of the same shape (any batch shape)."""
        if pred.shape != truth.shape:
            raise ValueError(f"ConfusionMeter: predictions {tuple(pred.shape)} and truth "
                             f"{tuple(truth.shape)} must have the same shape.")
        k = self.num_classes
        t, p = truth.reshape(-1).long(), pred.reshape(-1).long()
        keep = (t >= 0) & (t < k) if self.ignore_index is None else t != self.ignore_index
        idx = t[keep] * k + p[keep]
        self.matrix += torch.bincount(idx, minlength=k * k).reshape(k, k).cpu()
        self.n_samples += truth.shape[0] if truth.ndim == 3 else 1

    def update_logits(self, logits: Tensor, truth: Tensor) -> None:
        """Add ``(N, K, h, w)`` logits against ``(N, H, W)`` masks (logits resized to the
        mask's size first, so that the mask is scored at its own resolution)."""
        self.update(class_map(resize_logits(logits, truth.shape[-2:])), truth)

    def all_reduce(self, dist: Any) -> None:
        """Sum the matrices of every process (``dist``: a :class:`~transferkit.distributed.
        DistContext`)."""
        if getattr(dist, "is_distributed", False):
            flat = self.matrix.flatten().tolist() + [self.n_samples]
            summed = dist.sum([float(v) for v in flat])
            k = self.num_classes
            self.matrix = torch.tensor([round(v) for v in summed[:-1]],
                                       dtype=torch.int64).reshape(k, k)
            self.n_samples = round(summed[-1])


@dataclass(eq=False)
class SegmentationReport:
    """Per-pixel figures of a segmentation pass (from :func:`transferkit.evaluate`).

    Attributes:
        task: ``"segmentation"``.
        n_samples: images evaluated.
        num_classes: ``K``.
        metrics: ``loss`` (mean cross-entropy per scored pixel, when logits were seen),
            ``pixel_accuracy``, ``mean_iou``, ``mean_dice``, ``fw_iou`` (frequency-weighted
            IoU); also readable as attributes (``report.mean_iou``).
        per_class: ``{class name: {"iou", "dice", "precision", "recall", "pixels"}}``.
        confusion_matrix: ``(K, K)`` pixel counts, rows true class, columns predicted.
        class_names: names of the classes, or ``None`` (keys are then indices).
        ignore_index: the truth label left out of every figure.
        seconds, images_per_second: wall time of the pass (filled by ``evaluate``).
        examples: a few ``(image (H, W, 3) float in [0, 1], truth (H, W), prediction (H, W))``
            kept by ``evaluate`` for :meth:`plot_overlays` (not saved by :meth:`to_dict`).
    """

    task: str
    n_samples: int
    num_classes: int
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float | int | None]]
    confusion_matrix: np.ndarray
    class_names: list[str] | None = None
    ignore_index: int | None = DEFAULT_IGNORE_INDEX
    seconds: float | None = None
    images_per_second: float | None = None
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list,
                                                                      repr=False)

    def __getattr__(self, name: str) -> float:
        metrics = self.__dict__.get("metrics")
        if metrics is not None and name in metrics:
            return metrics[name]
        raise AttributeError(
            f"SegmentationReport has no attribute {name!r}. Its metrics: {sorted(metrics or {})}"
            "; per-class figures: report.iou, report.dice, report.per_class."
        )

    @property
    def iou(self) -> dict[str, float | None]:
        """IoU per class (``None`` for a class in neither truth nor prediction)."""
        return {c: row["iou"] for c, row in self.per_class.items()}  # type: ignore[misc]

    @property
    def dice(self) -> dict[str, float | None]:
        """Dice per class (``None`` for a class in neither truth nor prediction)."""
        return {c: row["dice"] for c, row in self.per_class.items()}  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe lists, floats, ints and strings (NaN becomes ``None``)."""
        return {
            "task": self.task, "n_samples": int(self.n_samples),
            "num_classes": int(self.num_classes),
            "class_names": list(self.class_names) if self.class_names else None,
            "ignore_index": self.ignore_index,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "per_class": {c: {k: _json_float(v) for k, v in d.items()}
                          for c, d in self.per_class.items()},
            "confusion_matrix": self.confusion_matrix.astype(int).tolist(),
            "seconds": _json_float(self.seconds),
            "images_per_second": _json_float(self.images_per_second),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SegmentationReport":
        """Rebuild a report from :meth:`to_dict` output (``None`` metrics come back as NaN)."""
        return cls(
            task=d["task"], n_samples=int(d["n_samples"]), num_classes=int(d["num_classes"]),
            metrics={k: float("nan") if v is None else float(v)
                     for k, v in d["metrics"].items()},
            per_class={c: dict(v) for c, v in d["per_class"].items()},
            confusion_matrix=np.asarray(d["confusion_matrix"], dtype=np.int64),
            class_names=d.get("class_names"), ignore_index=d.get("ignore_index"),
            seconds=d.get("seconds"), images_per_second=d.get("images_per_second"))

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def __str__(self) -> str:
        return _format(self)

    def __repr__(self) -> str:
        m = self.metrics
        return (f"SegmentationReport(n_samples={self.n_samples}, num_classes="
                f"{self.num_classes}, mean_iou={m['mean_iou']:.4g}, "
                f"pixel_accuracy={m['pixel_accuracy']:.4g})")

    def plot_overlays(self, path: str | Path | None = None, *, n: int = 4,
                      alpha: float = 0.5) -> Any:
        """Image / truth / prediction for up to ``n`` kept examples (one row each).

        Needs matplotlib (``pip install "transferkit[plot]"``). Returns the figure.

        Example:
            >>> report.plot_overlays("runs/x/overlays.png")  # doctest: +SKIP
        """
        return plot_overlays(self.examples[:n], path, num_classes=self.num_classes,
                             class_names=self.class_names, ignore_index=self.ignore_index,
                             alpha=alpha)


def segmentation_report(confusion: Tensor | np.ndarray, *, n_samples: int,
                        class_names: Sequence[str] | None = None,
                        ignore_index: int | None = DEFAULT_IGNORE_INDEX,
                        loss: float | None = None) -> SegmentationReport:
    """Every figure of a :class:`SegmentationReport` from a ``(K, K)`` pixel confusion matrix.

    Example:
        >>> import numpy as np
        >>> r = segmentation_report(np.array([[3, 1], [0, 4]]), n_samples=1)
        >>> round(r.pixel_accuracy, 3), round(r.mean_iou, 3)
        (0.875, 0.775)
    """
    cm = np.asarray(confusion, dtype=np.float64)
    k = cm.shape[0]
    tp = np.diag(cm)
    truth, pred = cm.sum(1), cm.sum(0)
    union = truth + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(truth + pred > 0, 2 * tp / (truth + pred), np.nan)
        precision = np.where(pred > 0, tp / pred, np.nan)
        recall = np.where(truth > 0, tp / truth, np.nan)
    total = cm.sum()
    freq = truth / total if total else np.zeros(k)
    scored = ~np.isnan(iou)
    metrics: dict[str, float] = {} if loss is None else {"loss": float(loss)}
    metrics.update(
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        mean_iou=float(iou[scored].mean()) if scored.any() else float("nan"),
        mean_dice=float(dice[scored].mean()) if scored.any() else float("nan"),
        fw_iou=float((freq[scored] * iou[scored]).sum()) if total else float("nan"),
    )
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    per_class = {
        names[c]: {"iou": _none(iou[c]), "dice": _none(dice[c]),
                   "precision": _none(precision[c]), "recall": _none(recall[c]),
                   "pixels": int(truth[c])}
        for c in range(k)
    }
    return SegmentationReport("segmentation", int(n_samples), k, metrics, per_class,
                              cm.astype(np.int64), list(class_names) if class_names else None,
                              ignore_index)


def _none(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _json_float(v: Any) -> float | int | None:
    if v is None:
        return None
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


# -- printing -------------------------------------------------------------------------------
def _format(r: SegmentationReport) -> str:
    head = f"SegmentationReport: {r.n_samples:,} images, {r.num_classes} classes"
    if r.ignore_index is not None:
        head += f", label {r.ignore_index} ignored"
    if r.seconds is not None:
        head += f" ({r.seconds:.2f} s, {r.images_per_second or 0:,.1f} images/s)"
    width = max(len(k) for k in r.metrics) + 2
    lines = [head] + [f"  {k:<{width}}{v:>10.4f}" for k, v in r.metrics.items()]
    name_w = max(10, *(len(c) + 2 for c in r.per_class))
    cols = ("iou", "dice", "precision", "recall", "pixels")
    lines += ["", "  " + f"{'class':<{name_w}}" + "".join(f"{c:>11}" for c in cols)]
    for name, row in r.per_class.items():
        cells = "".join(f"{'-':>11}" if row[c] is None else f"{row[c]:>11,d}" if c == "pixels"
                        else f"{row[c]:>11.4f}" for c in cols)
        lines.append(f"  {name:<{name_w}}{cells}")
    if r.num_classes <= 12:
        keys = list(r.per_class)
        w = max(8, *(len(k) + 2 for k in keys), len(f"{int(r.confusion_matrix.max()):,}") + 2)
        lines += ["", "  pixel confusion matrix (rows: true class, columns: predicted class)",
                  "  " + " " * w + "".join(f"{k:>{w}}" for k in keys)]
        for k, row in zip(keys, r.confusion_matrix):
            lines.append(f"  {k:<{w}}" + "".join(f"{int(v):>{w},d}" for v in row))
    return "\n".join(lines)


# -- drawing --------------------------------------------------------------------------------
def palette(num_classes: int) -> np.ndarray:
    """``(max(K, 256), 3)`` uint8 colours: class 0 black, then VOC's bit-interleaved colours."""
    n = max(num_classes, 256)
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def plot_overlays(examples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  path: str | Path | None = None, *, num_classes: int,
                  class_names: Sequence[str] | None = None,
                  ignore_index: int | None = DEFAULT_IGNORE_INDEX, alpha: float = 0.5) -> Any:
    """Draw ``(image, truth, prediction)`` triples as rows: image, truth over it, prediction
    over it (colours from :func:`palette`; ignored pixels transparent). Returns the figure."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            'plot_overlays needs matplotlib: pip install "transferkit[plot]"') from None
    if not examples:
        raise ValueError("plot_overlays: no examples to draw (evaluate keeps them: "
                         "evaluate(..., examples=4)).")
    colours = palette(num_classes).astype(np.float32) / 255
    fig, axes = plt.subplots(len(examples), 3, figsize=(9, 3 * len(examples)), squeeze=False)
    for row, (image, truth, pred) in zip(axes, examples):
        h, w = truth.shape
        for ax, title, mask in zip(row, ("image", "truth", "prediction"), (None, truth, pred)):
            ax.imshow(image, extent=(0, w, h, 0))
            if mask is not None:
                rgba = np.zeros((h, w, 4), dtype=np.float32)
                valid = mask != ignore_index if ignore_index is not None else np.ones_like(
                    mask, dtype=bool)
                rgba[..., :3] = colours[np.clip(mask, 0, len(colours) - 1)]
                rgba[..., 3] = np.where(valid & (mask != 0), alpha, 0)
                ax.imshow(rgba, extent=(0, w, h, 0), interpolation="nearest")
            ax.set_title(title)
            ax.axis("off")
    if class_names:
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color=colours[i], label=n) for i, n in enumerate(class_names)
                            if i], loc="lower center", ncol=min(6, len(class_names)),
                   fontsize=8)
    fig.tight_layout(rect=(0, 0.05 if class_names else 0, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


class SegmentationMeter:
    """Everything :func:`transferkit.evaluate` accumulates for a segmentation model, batch by
    batch: the pixel confusion matrix, the summed cross-entropy, and a few examples to draw.

    Args:
        num_classes, ignore_index: as in :class:`ConfusionMeter`.
        class_names: names for the report.
        examples: how many ``(image, truth, prediction)`` triples to keep.
        mean, std: the inputs' normalisation (to show the images as they were).
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = DEFAULT_IGNORE_INDEX,
                 class_names: Sequence[str] | None = None, examples: int = 4,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)) -> None:
        self.confusion = ConfusionMeter(num_classes, ignore_index)
        self.class_names = class_names
        self.examples_wanted = examples
        self.examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)
        self.loss_sum = 0.0
        self.pixels = 0

    def update(self, logits: Tensor, masks: Tensor | list[Tensor], images: Tensor) -> None:
        """Add a batch: logits ``(N, K, h, w)``, masks ``(N, H, W)`` (or a list of ``(H, W)``
        of different sizes), and the model's inputs ``(N, C, h, w)``."""
        if isinstance(masks, list):
            for lo, m, im in zip(logits, masks, images):
                self.update(lo[None], m[None], im[None])
            return
        if masks.is_floating_point() or masks.ndim != 3:
            raise ValueError(f"evaluate: segmentation masks must be (N, H, W) integer class "
                             f"indices, got {masks.dtype} {tuple(masks.shape)}.")
        masks = masks.long()
        logits = resize_logits(logits.float(), masks.shape[-2:])  # scored at the mask's size
        ignore = self.confusion.ignore_index
        valid = (masks != ignore) if ignore is not None else torch.ones_like(masks, dtype=torch.bool)
        self.loss_sum += float(F.cross_entropy(
            logits, masks.where(valid, 0), reduction="none")[valid].sum())
        self.pixels += int(valid.sum())
        pred = class_map(logits)
        self.confusion.update(pred, masks)
        self._keep(images, masks, pred)

    def _keep(self, images: Tensor, masks: Tensor, pred: Tensor) -> None:
        for im, m, p in zip(images, masks, pred):
            if len(self.examples) >= self.examples_wanted:
                return
            im = im.detach().float().cpu()
            c = im.shape[0]
            im = im * self.std[:c, None, None] + self.mean[:c, None, None]
            im = im.clamp(0, 1).permute(1, 2, 0).numpy()
            self.examples.append((im if c == 3 else np.repeat(im[..., :1], 3, axis=2),
                                  m.cpu().numpy(), p.cpu().numpy()))

    def all_reduce(self, dist: Any) -> None:
        """Sum over processes (under ``torchrun``)."""
        if getattr(dist, "is_distributed", False):
            self.confusion.all_reduce(dist)
            self.loss_sum, self.pixels = dist.sum([self.loss_sum, float(self.pixels)])

    def report(self) -> SegmentationReport:
        r = segmentation_report(self.confusion.matrix, n_samples=self.confusion.n_samples,
                                class_names=self.class_names,
                                ignore_index=self.confusion.ignore_index,
                                loss=self.loss_sum / self.pixels if self.pixels else None)
        r.examples = self.examples
        return r
