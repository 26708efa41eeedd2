"""``compute_report``: every evaluation figure of one task from targets and logits.

The figures come from scikit-learn wherever it has them (accuracy, top-k accuracy, precision /
recall / F1, confusion matrix, average precision, regression errors); only the loss (from the
logits, in float64) and the expected calibration error are computed here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy.special import softmax
from sklearn import metrics as skm

from .._tasks import CLASSIFICATION_TASKS
from ..errors import DataError, MissingDependencyError

__all__ = ["EvalReport", "compute_report", "expected_calibration_error", "TASKS"]

Task = Literal["multiclass", "multilabel", "regression"]
TASKS = CLASSIFICATION_TASKS  # the tasks this report covers (the names live in _tasks.py)
ArrayLike = Any  # numpy array, torch tensor or nested list


@dataclass(eq=False)
class EvalReport:
    """The result of :func:`compute_report` / :func:`transferkit.evaluate`.

    Attributes:
        task: ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        n_samples: number of evaluated samples.
        num_classes: outputs per sample (classes, labels or regression targets).
        metrics: every scalar figure by name, ``loss`` first. Also readable as attributes:
            ``report.accuracy``, ``report.macro_f1``, ``report.ece``, ``report.mAP``,
            ``report.r2`` ... (see ``report.metrics.keys()`` for the task's names).
        top_k: multiclass: ``{k: top-k accuracy}`` for each requested ``k < num_classes``
            (``k = 1`` always); empty for other tasks.
        per_class: ``{class name: {figure: value}}``: precision, recall, f1 and support
            (multiclass); average_precision and positives (multilabel); empty for regression.
        confusion_matrix: multiclass: ``(K, K)`` ints, rows are true classes, columns predicted.
        class_names: names of the classes (``None`` when unknown: per-class keys are indices).
        seconds, images_per_second: wall time of the evaluation (filled by ``evaluate``).
    """

    task: str
    n_samples: int
    num_classes: int
    metrics: dict[str, float]
    top_k: dict[int, float] = field(default_factory=dict)
    per_class: dict[str, dict[str, float | None]] = field(default_factory=dict)
    confusion_matrix: np.ndarray | None = None
    class_names: list[str] | None = None
    seconds: float | None = None
    images_per_second: float | None = None
    samples: dict[str, np.ndarray] | None = field(default=None, repr=False)  # error_analysis
    data: Any = field(default=None, repr=False)  # what evaluate ran on (a reference)

    def __getattr__(self, name: str) -> float:
        metrics = self.__dict__.get("metrics")
        if metrics is not None and name in metrics:
            return metrics[name]
        raise AttributeError(
            f"EvalReport for task {self.__dict__.get('task')!r} has no attribute {name!r}. "
            f"Its metrics: {sorted(metrics or {})}."
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe lists, floats, ints and strings (NaN becomes ``None``)."""
        cm = self.confusion_matrix
        return {
            "task": self.task,
            "n_samples": int(self.n_samples),
            "num_classes": int(self.num_classes),
            "class_names": list(self.class_names) if self.class_names else None,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "top_k": {str(k): _json_float(v) for k, v in self.top_k.items()},
            "per_class": {
                c: {k: _json_float(v) for k, v in d.items()} for c, d in self.per_class.items()
            },
            "confusion_matrix": cm.astype(int).tolist() if cm is not None else None,
            "seconds": _json_float(self.seconds),
            "images_per_second": _json_float(self.images_per_second),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvalReport":
        """Rebuild a report from :meth:`to_dict` output (``None`` metrics come back as NaN)."""
        cm = d.get("confusion_matrix")
        return cls(
            task=d["task"],
            n_samples=int(d["n_samples"]),
            num_classes=int(d["num_classes"]),
            metrics={k: _nan_if_none(v) for k, v in d["metrics"].items()},
            top_k={int(k): float(v) for k, v in d.get("top_k", {}).items()},
            per_class={c: dict(v) for c, v in d.get("per_class", {}).items()},
            confusion_matrix=np.asarray(cm, dtype=np.int64) if cm is not None else None,
            class_names=d.get("class_names"),
            seconds=d.get("seconds"),
            images_per_second=d.get("images_per_second"),
        )

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        """The report as JSON text; also written to ``path`` when given.

        Example:
            >>> text = report.to_json("runs/exp1/eval.json")  # doctest: +SKIP
        """
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def __str__(self) -> str:
        return _format_report(self)

    def __repr__(self) -> str:
        main = ", ".join(f"{k}={v:.4g}" for k, v in list(self.metrics.items())[:4])
        return f"EvalReport(task={self.task!r}, n_samples={self.n_samples}, {main})"

    def plot_confusion_matrix(self, path: str | Path | None = None,
                              normalize: str | None = None) -> Any:
        """Draw the confusion matrix with matplotlib; save it to ``path`` when given.

        Args:
            path: an image file (``.png``, ``.pdf``, ...) to write, or ``None``.
            normalize: ``None`` (counts), ``"true"`` (rows sum to 1: recall per class),
                ``"pred"`` (columns sum to 1: precision) or ``"all"``.

        Returns:
            The ``matplotlib.figure.Figure``.

        Example:
            >>> fig = report.plot_confusion_matrix("cm.png", normalize="true")  # doctest: +SKIP
        """
        return _plot_confusion_matrix(self, path, normalize)

    def top_losses(self, k: int = 9) -> list:
        """The ``k`` samples with the highest cross-entropy, highest first: index, true and
        predicted class, probability, loss (multiclass; see :mod:`.error_analysis`).

        Example:
            >>> [t.index for t in report.top_losses(3)]  # doctest: +SKIP
            [17, 4, 250]
        """
        from .error_analysis import top_losses

        return top_losses(self, k)

    def plot_top_losses(self, k: int = 9, path: str | Path | None = None, *,
                        data: Any = None) -> Any:
        """A figure of the ``k`` highest-loss samples (images from ``data``, default: the data
        ``evaluate`` ran on); saved to ``path`` when given. Needs matplotlib."""
        from .error_analysis import plot_top_losses

        return plot_top_losses(self, k, path, data=data)


def _json_float(v: Any) -> float | int | None:
    if v is None:
        return None
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def _nan_if_none(v: Any) -> float:
    return float("nan") if v is None else float(v)


# -- printing and plotting ------------------------------------------------------------------
_MAX_PRINTED_CLASSES = 50
_MAX_PRINTED_MATRIX = 20


def _format_report(r: EvalReport) -> str:
    noun = {"multiclass": "classes", "multilabel": "labels"}.get(r.task, "outputs")
    head = f"EvalReport: {r.task}, {r.n_samples:,} samples, {r.num_classes} {noun}"
    if r.seconds is not None:
        head += f" ({r.seconds:.2f} s, {r.images_per_second or 0:,.1f} images/s)"
    width = max(len(k) for k in r.metrics) + 2
    lines = [head] + [f"  {k:<{width}}{v:>10.4f}" for k, v in r.metrics.items()]
    if r.per_class and len(r.per_class) <= _MAX_PRINTED_CLASSES:
        lines += _format_per_class(r.per_class)
    elif r.per_class:
        lines.append(f"  per class: {len(r.per_class)} classes, see report.per_class")
    if r.confusion_matrix is not None and r.num_classes <= _MAX_PRINTED_MATRIX:
        lines += _format_matrix(r.confusion_matrix, list(r.per_class))
    return "\n".join(lines)


def _format_per_class(per_class: dict[str, dict[str, float | None]]) -> list[str]:
    cols = list(next(iter(per_class.values())))
    w = [max(10, len(c) + 2) for c in cols]
    width = max(10, *(len(c) + 2 for c in per_class))
    lines = ["", "  " + f"{'class':<{width}}" + "".join(f"{c:>{n}}" for c, n in zip(cols, w))]
    for name, row in per_class.items():
        cells = "".join(
            f"{'-':>{n}}" if v is None else f"{v:>{n}d}" if isinstance(v, int) else f"{v:>{n}.4f}"
            for v, n in zip(row.values(), w)
        )
        lines.append(f"  {name:<{width}}{cells}")
    return lines


def _format_matrix(cm: np.ndarray, keys: list[str]) -> list[str]:
    width = max(6, *(len(k) + 2 for k in keys), len(str(int(cm.max()))) + 2)
    lines = ["", "  confusion matrix (rows: true class, columns: predicted class)"]
    lines.append("  " + " " * width + "".join(f"{k:>{width}}" for k in keys))
    for k, row in zip(keys, cm):
        lines.append(f"  {k:<{width}}" + "".join(f"{int(v):>{width}d}" for v in row))
    return lines


def _normalized(cm: np.ndarray, normalize: str | None) -> np.ndarray:
    if normalize is None:
        return cm
    if normalize not in ("true", "pred", "all"):
        raise ValueError(
            f"plot_confusion_matrix: normalize must be None, 'true', 'pred' or 'all', got "
            f"{normalize!r}."
        )
    # scikit-learn's own normalisation, fed the counts as weighted (true, predicted) pairs:
    # the report keeps the matrix, not the labels, and the weights give the same matrix.
    k = cm.shape[0]
    true, pred = np.indices((k, k))
    return skm.confusion_matrix(true.ravel(), pred.ravel(), labels=np.arange(k),
                                sample_weight=cm.ravel(), normalize=normalize)


def _plot_confusion_matrix(r: EvalReport, path: str | Path | None, normalize: str | None) -> Any:
    if r.confusion_matrix is None:
        raise ValueError(
            f"plot_confusion_matrix: only multiclass reports have a confusion matrix; this "
            f"report is for task {r.task!r}."
        )
    cm = _normalized(r.confusion_matrix, normalize)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            "plot_confusion_matrix needs matplotlib, which is not installed. Install it with "
            'pip install "transferkit[plot]" (or pip install matplotlib).'
        ) from None
    keys, k = list(r.per_class), r.num_classes
    size = min(4 + 0.4 * k, 20)
    fig = Figure(figsize=(size + 1, size))  # no pyplot: no global state, no GUI backend
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted class", ylabel="true class",
           title=f"Confusion matrix ({normalize or 'counts'}, {r.n_samples} samples)")
    ax.set_xticklabels(keys, rotation=45, ha="right")
    ax.set_yticklabels(keys)
    if k <= 30:
        high = cm.max() / 2 if cm.size else 0
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                    color="white" if v > high else "black", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# -- input checks ---------------------------------------------------------------------------
def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.double() if x.is_floating_point() else x).numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"compute_report: {name} must be a numpy array, a torch tensor or a list, "
            f"got {type(x).__name__} ({exc})."
        ) from None


def _check_common(y: np.ndarray, out: np.ndarray, task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"compute_report: task must be one of {list(TASKS)}, got {task!r}.")
    if len(y) != len(out):
        raise DataError(
            f"compute_report: targets has {len(y)} samples but outputs has {len(out)}; they "
            "must have the same length (one row of outputs per target)."
        )
    if len(y) == 0:
        raise DataError("compute_report: there are no samples (targets and outputs are empty).")
    if not np.issubdtype(out.dtype, np.number) or out.dtype == np.bool_:
        raise DataError(f"compute_report: outputs must be numbers (logits), got dtype {out.dtype}.")
    bad = ~np.isfinite(out.astype(np.float64))
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(
            f"compute_report: outputs hold {int(bad.sum())} non-finite values (NaN or inf) in "
            f"{len(rows)} samples, first at sample {int(rows[0])}. The model diverged or its "
            "inputs are broken; check the loss during training and the input normalisation."
        )


def _check_class_targets(y: np.ndarray, num_classes: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"compute_report: multiclass targets must be class indices of shape (N,), got "
            f"shape {y.shape}. For one-hot or multi-hot targets use task='multilabel'."
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError(
                "compute_report: multiclass targets must be integer class indices, got "
                "non-integer floats. For regression use task='regression'."
            )
    elif y.dtype.kind not in "iub":
        raise DataError(
            f"compute_report: targets must be integer class indices, got dtype {y.dtype}."
        )
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise DataError(
            f"compute_report: {int(bad.sum())} targets are outside [0, {num_classes}) "
            f"(values {sorted(set(y[bad].tolist()))[:5]}), but the outputs have {num_classes} "
            "classes. Check the label mapping or the model's num_classes."
        )
    return y


def _check_options(top_k: Sequence[int], thresholds: Sequence[float], n_bins: int) -> None:
    for k in top_k:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"compute_report: top_k must be ints >= 1, got {list(top_k)!r}.")
    if not thresholds or any(not 0.0 <= float(t) <= 1.0 for t in thresholds):
        raise ValueError(
            f"compute_report: thresholds must be probabilities in [0, 1], got {list(thresholds)!r}."
        )
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"compute_report: n_bins must be an int >= 1, got {n_bins!r}.")


def _class_keys(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(
            f"compute_report: class_names has {len(class_names)} names but the outputs have "
            f"{num_classes} classes; give one name per class."
        )
    return [str(c) for c in class_names]


# -- the figures ----------------------------------------------------------------------------
def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-1 confidence: ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``.

    The confidence of a sample is its largest softmax probability; bin ``b`` (of ``n_bins``
    equal-width bins) holds the confidences in ``(b/n_bins, (b+1)/n_bins]`` (a confidence of
    exactly 0 joins the first bin). ``acc(B_b)`` is the fraction of correct top-1 predictions in
    the bin and ``conf(B_b)`` their mean confidence; empty bins add nothing.

    Args:
        probs: ``(N, K)`` class probabilities.
        y: ``(N,)`` true class indices.
        n_bins: number of bins.

    Returns:
        The ECE, a float in [0, 1].

    Example:
        >>> import numpy as np
        >>> probs, y = np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1])
        >>> round(expected_calibration_error(probs, y), 3)
        0.35
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        sel = bins == b
        ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def _multiclass(y: np.ndarray, logits: np.ndarray, keys: list[str], top_k: Sequence[int],
                n_bins: int, loss: float | None) -> dict[str, Any]:
    num_classes = logits.shape[1]
    labels = list(range(num_classes))
    probs = softmax(logits, axis=1)
    pred = logits.argmax(axis=1)
    if loss is None:
        log_probs = logits - logits.max(axis=1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
        loss = float(-log_probs[np.arange(len(y)), y].mean())
    acc = float(skm.accuracy_score(y, pred))
    topk = {1: acc}
    for k in sorted({int(k) for k in top_k if 1 < k < num_classes}):
        topk[k] = float(skm.top_k_accuracy_score(y, logits, k=k, labels=labels))
    m: dict[str, float] = {"loss": loss, "accuracy": acc}
    m.update({f"top{k}_accuracy": v for k, v in topk.items() if k > 1})
    # One per-class pass; macro is its plain mean and weighted its support-weighted mean,
    # exactly as scikit-learn averages (one call instead of three: evaluate's fixed cost).
    p, r, f, s = skm.precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=0)
    weights = s / s.sum()
    for avg, w in (("macro", None), ("weighted", weights)):
        m.update({f"{avg}_precision": float(np.average(p, weights=w)),
                  f"{avg}_recall": float(np.average(r, weights=w)),
                  f"{avg}_f1": float(np.average(f, weights=w))})
    m["ece"] = expected_calibration_error(probs, y, n_bins)
    per_class = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
            "support": int(s[i])}
        for i, c in enumerate(keys)
    }
    cm = skm.confusion_matrix(y, pred, labels=labels)
    return {"metrics": m, "top_k": topk, "per_class": per_class, "confusion_matrix": cm}


def _check_multilabel_targets(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if y.shape != shape:
        raise DataError(
            f"compute_report: multilabel targets must have the shape of the outputs {shape} "
            f"(one 0/1 column per label), got {y.shape}."
        )
    if not np.isin(y, (0, 1)).all():
        raise DataError("compute_report: multilabel targets must be 0 or 1, got other values.")
    return y.astype(np.int64)


def _multilabel(y: np.ndarray, logits: np.ndarray, keys: list[str],
                thresholds: Sequence[float], loss: float | None) -> dict[str, Any]:
    if loss is None:  # BCE with logits, the stable form: max(x, 0) - x*y + log(1 + exp(-|x|))
        bce = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
        loss = float(bce.mean())
    probs = 1.0 / (1.0 + np.exp(-logits))
    positives = y.sum(axis=0)
    has_pos = positives > 0
    # Classes without a positive have no defined AP: they are left out of the mean (per class
    # they read None); with no positive at all, mAP is NaN.
    ap = np.full(y.shape[1], np.nan)
    if has_pos.any():
        ap[has_pos] = skm.average_precision_score(y[:, has_pos], probs[:, has_pos], average=None)
    m: dict[str, float] = {
        "loss": loss,
        "mAP": float(ap[has_pos].mean()) if has_pos.any() else float("nan"),
    }
    for i, t in enumerate(thresholds):
        pred = (probs >= float(t)).astype(np.int64)
        micro = float(skm.f1_score(y, pred, average="micro", zero_division=0))
        macro = float(skm.f1_score(y, pred, average="macro", zero_division=0))
        if i == 0:
            m["micro_f1"], m["macro_f1"] = micro, macro
        m[f"micro_f1@{float(t):g}"], m[f"macro_f1@{float(t):g}"] = micro, macro
    per_class = {
        c: {"average_precision": None if np.isnan(ap[i]) else float(ap[i]),
            "positives": int(positives[i])}
        for i, c in enumerate(keys)
    }
    return {"metrics": m, "per_class": per_class}


def _regression(y: np.ndarray, out: np.ndarray, loss: float | None) -> dict[str, Any]:
    y = y.reshape(len(y), -1).astype(np.float64)
    out = out.reshape(len(out), -1)
    if y.shape != out.shape:
        raise DataError(
            f"compute_report: regression targets have {y.shape[1]} values per sample but the "
            f"outputs have {out.shape[1]}; they must match."
        )
    if not np.all(np.isfinite(y)):
        raise DataError("compute_report: regression targets hold NaN or inf values.")
    mse = float(skm.mean_squared_error(y, out))
    r2 = float(skm.r2_score(y, out)) if len(y) > 1 else float("nan")
    return {"metrics": {"loss": mse if loss is None else loss, "mse": mse,
                        "mae": float(skm.mean_absolute_error(y, out)),
                        "rmse": math.sqrt(mse), "r2": r2}}


def compute_report(
    targets: ArrayLike,
    outputs: ArrayLike,
    *,
    task: Task = "multiclass",
    top_k: Sequence[int] = (1, 5),
    class_names: Sequence[str] | None = None,
    loss: float | None = None,
    thresholds: Sequence[float] = (0.5,),
    n_bins: int = 15,
) -> EvalReport:
    """Every evaluation figure of ``task`` for model ``outputs`` (logits) against ``targets``.

    Args:
        targets: multiclass: ``(N,)`` class indices in ``[0, K)``; multilabel: ``(N, K)`` 0/1;
            regression: ``(N,)`` or ``(N, D)`` values.
        outputs: the model's raw outputs ``(N, K)`` (logits; regression ``(N,)`` or ``(N, D)``).
        task: ``"multiclass"`` (loss = cross-entropy, accuracy, top-k, precision / recall / F1
            macro, weighted and per class, confusion matrix, ECE), ``"multilabel"`` (loss = BCE
            with logits, mAP over classes with at least one positive, micro/macro F1 at each
            threshold) or ``"regression"`` (loss = MSE, MAE, RMSE, R^2).
        top_k: multiclass top-k accuracies to report. ``k >= K`` is skipped (it would always
            be 1); top-1 is always reported as ``accuracy`` and ``top_k[1]``.
        class_names: one name per class, used as keys of ``per_class``.
        loss: a loss computed elsewhere (the training criterion, say); else computed here.
        thresholds: multilabel: thresholds on the sigmoid probability; ``micro_f1`` and
            ``macro_f1`` are at the first one, ``micro_f1@t`` / ``macro_f1@t`` at each.
        n_bins: equal-width bins of the expected calibration error.

    Returns:
        An :class:`EvalReport`.

    Raises:
        DataError: different lengths, labels outside ``[0, K)``, non-finite outputs, ...

    Example:
        >>> import torch
        >>> r = compute_report(torch.tensor([0, 1, 2]), torch.eye(3), top_k=(1,))
        >>> r.accuracy, r.confusion_matrix.tolist()
        (1.0, [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    """
    y, out = _to_numpy(targets, "targets"), _to_numpy(outputs, "outputs")
    loss = None if loss is None else float(loss)
    _check_common(y, out, task)
    _check_options(top_k, thresholds, n_bins)
    out = out.astype(np.float64)
    if task == "regression":
        parts = _regression(y, out, loss)
        return EvalReport(task, len(y), out.reshape(len(out), -1).shape[1], **parts)
    if out.ndim != 2 or (task == "multiclass" and out.shape[1] < 2):
        raise DataError(
            f"compute_report: {task} outputs must be logits of shape (N, K) with K >= "
            f"{2 if task == 'multiclass' else 1}, got {out.shape}. A single-logit binary "
            "classifier is task='multilabel' with one label."
        )
    keys = _class_keys(class_names, out.shape[1])
    names = list(keys) if class_names is not None else None
    if task == "multiclass":
        parts = _multiclass(_check_class_targets(y, out.shape[1]), out, keys, top_k, n_bins, loss)
    else:
        parts = _multilabel(_check_multilabel_targets(y, out.shape), out, keys, thresholds, loss)
    if task == "multiclass":
        from .error_analysis import per_sample

        parts["samples"] = per_sample(_check_class_targets(y, out.shape[1]), out)
    return EvalReport(task, len(y), out.shape[1], class_names=names, **parts)
