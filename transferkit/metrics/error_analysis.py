"""The worst mistakes of a classifier: per-sample losses kept by ``compute_report`` and the
``top_losses`` / ``plot_top_losses`` views of an :class:`~transferkit.metrics.EvalReport`.

Per sample the report keeps four numbers (true class, predicted class, its probability, the
cross-entropy), ``O(N)`` floats, not the logits; ``evaluate`` also keeps a reference to the
data it was given (no copy) so that the plot can show the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["TopLoss", "per_sample", "top_losses", "plot_top_losses"]


@dataclass(frozen=True)
class TopLoss:
    """One of the highest-loss samples.

    Attributes:
        index: the sample's position in the evaluated data.
        target, predicted: true and predicted class indices.
        target_name, predicted_name: their names (``None`` when the report has none).
        probability: the predicted class's probability.
        target_probability: the true class's probability.
        loss: the sample's cross-entropy, ``-log p(target)``.
    """

    index: int
    target: int
    predicted: int
    target_name: str | None
    predicted_name: str | None
    probability: float
    target_probability: float
    loss: float


def per_sample(y: np.ndarray, logits: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample cross-entropy (float64, stable log-softmax) and probabilities."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (N, K)
    pred = log_probs.argmax(axis=1)
    rows = np.arange(len(y))
    return {"targets": y.astype(np.int64), "predicted": pred.astype(np.int64),
            "probability": np.exp(log_probs[rows, pred]),
            "target_probability": np.exp(log_probs[rows, y]),
            "loss": -log_probs[rows, y]}


def _check(report: Any, k: Any, what: str) -> int:
    if report.samples is None:
        raise ValueError(
            f"{what}: this report has no per-sample losses; they exist for multiclass reports "
            f"from evaluate or compute_report (this one is {report.task!r}"
            f"{', loaded from JSON' if report.task == 'multiclass' else ''}).")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{what}: k must be an int >= 1, got {k!r}.")
    return min(k, report.n_samples)


def top_losses(report: Any, k: int = 9) -> list[TopLoss]:
    """The ``k`` samples with the highest loss, highest first (ties: lower index first)."""
    k = _check(report, k, "top_losses")
    s = report.samples
    order = np.lexsort((np.arange(len(s["loss"])), -s["loss"]))[:k]
    names = report.class_names

    def name(i: int) -> str | None:
        return str(names[i]) if names else None

    return [TopLoss(int(i), int(s["targets"][i]), int(s["predicted"][i]),
                    name(int(s["targets"][i])), name(int(s["predicted"][i])),
                    float(s["probability"][i]), float(s["target_probability"][i]),
                    float(s["loss"][i])) for i in order]


def _image(data: Any, index: int) -> np.ndarray | None:
    """Sample ``index`` of the evaluated data as an ``(H, W, 3)`` array in [0, 1], if it can
    be read without running the whole data (tensors, datasets; not a DataLoader)."""
    import torch

    item = None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        item = data[0][index]
    elif hasattr(data, "__getitem__") and not isinstance(data, (str, bytes)):
        try:
            item = data[index]
        except Exception:
            return None
        if isinstance(item, (tuple, list)):
            item = item[0]
    if item is None:
        return None
    if not isinstance(item, torch.Tensor):
        try:
            from torchvision.transforms.v2.functional import pil_to_tensor

            item = pil_to_tensor(item.convert("RGB"))
        except Exception:
            return None
    x = torch.as_tensor(item).detach().float().cpu()
    if x.ndim == 2:
        x = x[None]
    if x.max() > 1.5:
        x = x / 255
    if x.min() < 0:  # normalised: stretch to [0, 1] for display
        x = (x - x.min()) / (x.max() - x.min() + 1e-12)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
    return x.permute(1, 2, 0).clamp(0, 1).numpy()


def plot_top_losses(report: Any, k: int = 9, path: str | Path | None = None, *,
                    data: Any = None) -> Any:
    """A grid of the ``k`` highest-loss samples: the image (when the data can be indexed),
    titled ``predicted / true / loss / probability``. Saved to ``path`` when given."""
    items = top_losses(report, k)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            'plot_top_losses needs matplotlib. Install it with pip install "transferkit[plot]".'
        ) from None
    data = report.data if data is None else data
    cols = min(len(items), 3)
    rows = -(-len(items) // cols)
    fig = Figure(figsize=(3.2 * cols, 3.4 * rows))
    FigureCanvasAgg(fig)
    for n, item in enumerate(items):
        ax = fig.add_subplot(rows, cols, n + 1)
        img = _image(data, item.index) if data is not None else None
        if img is not None:
            ax.imshow(img)
        else:
            ax.text(0.5, 0.5, f"sample {item.index}", ha="center", va="center")
        pred = item.predicted_name or item.predicted
        true = item.target_name or item.target
        ax.set_title(f"#{item.index} {pred} / {true}\nloss {item.loss:.2f}, "
                     f"p {item.probability:.2f}", fontsize=9)
        ax.axis("off")
    fig.suptitle("Top losses: predicted / true, loss, probability of the prediction")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
