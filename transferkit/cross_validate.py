"""``cross_validate``: k-fold fine-tuning and evaluation, with each metric's mean and spread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from .errors import DataError
from .evaluate import evaluate
from .metrics.classification import EvalReport

__all__ = ["cross_validate", "CrossValidationResult"]

# finetune options that evaluate takes too: a fold is evaluated as it was trained.
_SHARED_OPTIONS = ("task", "batch_size", "num_workers", "device", "amp", "progress")


@dataclass(eq=False)
class CrossValidationResult:
    """Each fold's evaluation and the spread of every scalar metric across folds.

    Attributes:
        reports: the :class:`EvalReport` of each fold's held-out part, fold 1 first.
        folds: ``(train_indices, val_indices)`` of each fold, as numpy arrays.
        histories: what ``finetune`` returned for each fold (its training history).
        k, stratified, seed: how the folds were drawn.
    """

    reports: list[EvalReport]
    folds: list[tuple[np.ndarray, np.ndarray]]
    histories: list[Any] = field(default_factory=list)
    k: int = 5
    stratified: bool = True
    seed: int = 0

    @property
    def metric_names(self) -> list[str]:
        """Scalar metrics that every fold reports, in report order."""
        names = list(self.reports[0].metrics)
        return [n for n in names if all(n in r.metrics for r in self.reports)]

    def _values(self, name: str) -> np.ndarray:
        return np.array([r.metrics[name] for r in self.reports], dtype=np.float64)

    @property
    def mean(self) -> dict[str, float]:
        """Mean of each scalar metric over the folds."""
        return {n: float(self._values(n).mean()) for n in self.metric_names}

    @property
    def std(self) -> dict[str, float]:
        """Standard deviation of each scalar metric over the folds (``ddof=0``, as numpy)."""
        return {n: float(self._values(n).std()) for n in self.metric_names}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: fold reports, indices, mean and std."""
        return {
            "k": self.k, "stratified": self.stratified, "seed": self.seed,
            "mean": self.mean, "std": self.std,
            "reports": [r.to_dict() for r in self.reports],
            "folds": [{"train": tr.tolist(), "val": va.tolist()} for tr, va in self.folds],
        }

    def __str__(self) -> str:
        n = sum(len(va) for _, va in self.folds)
        how = "stratified" if self.stratified else "shuffled"
        lines = [f"Cross-validation: {self.k} folds ({how}, seed {self.seed}), {n} samples"]
        width = max(len(m) for m in self.metric_names) + 2
        folds = "".join(f"{f'fold {i + 1}':>10}" for i in range(len(self.reports)))
        lines.append(f"  {'metric':<{width}}{'mean':>10}{'std':>10}{folds}")
        mean, std = self.mean, self.std
        for m in self.metric_names:
            per_fold = "".join(f"{v:>10.4f}" for v in self._values(m))
            lines.append(f"  {m:<{width}}{mean[m]:>10.4f}{std[m]:>10.4f}{per_fold}")
        return "\n".join(lines)


def _finetune(model: nn.Module, train_data: Any, **options: Any) -> Any:
    """Train one fold (an indirection, so that tests can replace the trainer)."""
    from .finetune import finetune

    return finetune(model, train_data, **options)


def _targets(dataset: Any) -> torch.Tensor | None:
    """The labels of ``dataset`` without loading its images, or ``None`` when unknown."""
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        return torch.as_tensor(np.asarray(dataset[1]))
    if isinstance(dataset, Subset):
        inner = _targets(dataset.dataset)
        return None if inner is None else inner[torch.as_tensor(list(dataset.indices))]
    targets = getattr(dataset, "targets", None)
    return None if targets is None else torch.as_tensor(np.asarray(targets))


def _length(dataset: Any) -> int:
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        if len(dataset[0]) != len(dataset[1]):
            raise DataError(
                f"cross_validate: X has {len(dataset[0])} samples but y has {len(dataset[1])}; "
                "they must match."
            )
        return len(dataset[1])
    if isinstance(dataset, Dataset) and hasattr(dataset, "__len__"):
        return len(dataset)  # type: ignore[arg-type]
    raise TypeError(
        "cross_validate: dataset must be a torch Dataset (with .targets for stratified folds) "
        f"or a pair (X, y) of tensors; got {type(dataset).__name__}."
    )


def _splits(dataset: Any, k: int, stratified: bool, seed: int
            ) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    n = _length(dataset)
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"cross_validate: k must be an int in [2, {n}] (the samples), got {k!r}.")
    if not stratified:
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.arange(n)))
    y = _targets(dataset)
    if y is None:
        raise DataError(
            "cross_validate: stratified folds need the labels up front: give a Dataset with "
            ".targets or a pair (X, y), or pass stratified=False."
        )
    if y.ndim != 1 or y.is_floating_point():
        raise DataError(
            f"cross_validate: stratified folds need one class label per sample, got targets of "
            f"dtype {y.dtype} and shape {tuple(y.shape)}. Pass stratified=False for "
            "multilabel or regression targets."
        )
    y_np = y.numpy()
    if np.bincount(y_np - y_np.min()).max() < k:
        raise DataError(
            f"cross_validate: k={k} stratified folds need a class with at least {k} samples; "
            "every class has fewer. Lower k or pass stratified=False."
        )
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(n), y_np))


def _subset(dataset: Any, idx: np.ndarray) -> Any:
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        i = torch.as_tensor(idx, dtype=torch.long)
        return tuple(torch.as_tensor(np.asarray(a))[i] if not isinstance(a, torch.Tensor)
                     else a[i] for a in dataset)
    return Subset(dataset, idx.tolist())


def cross_validate(
    build_model: Callable[[], nn.Module],
    dataset: Any,
    *,
    k: int = 5,
    stratified: bool = True,
    seed: int = 0,
    eval_options: dict[str, Any] | None = None,
    **finetune_kwargs: Any,
) -> CrossValidationResult:
    """Fine-tune and evaluate a fresh model on each of ``k`` folds of ``dataset``.

    Fold ``i`` trains ``build_model()`` with ``transferkit.finetune(model, train_part,
    **finetune_kwargs)`` and evaluates it with :func:`transferkit.evaluate` on the held-out
    part. Folds come from scikit-learn's ``StratifiedKFold`` (each fold keeps the class
    proportions) or ``KFold``, both with ``shuffle=True, random_state=seed``.

    Args:
        build_model: a function returning a new, untrained model (called once per fold).
        dataset: a torch ``Dataset`` (with ``.targets`` for stratified folds) or ``(X, y)``.
        k: number of folds, >= 2.
        stratified: keep class proportions in every fold (needs single-label targets).
        seed: seed of the fold split.
        eval_options: options for ``evaluate`` (``top_k``, ``batch_size`` ...). By default the
            finetune options ``task``, ``batch_size``, ``num_workers``, ``device``, ``amp`` and
            ``progress`` are used for the evaluation too.
        **finetune_kwargs: options of ``finetune`` (``epochs``, ``lr``, ``strategy`` ...).

    Returns:
        A :class:`CrossValidationResult`: ``.reports``, ``.mean``, ``.std``; prints as a table.

    Example:
        >>> import torch, transferkit as tk
        >>> X, y = torch.rand(20, 3, 32, 32), torch.arange(20) % 2
        >>> build = lambda: tk.replace_head(tk.load_backbone("resnet18"), num_classes=2)
        >>> cv = tk.cross_validate(build, (X, y), k=2, epochs=1, progress=False)  # doctest: +SKIP
        >>> sorted(cv.mean)[:2]  # doctest: +SKIP
        ['accuracy', 'ece']
    """
    if not callable(build_model) or isinstance(build_model, nn.Module):
        raise TypeError(
            "cross_validate: build_model must be a function returning a new model (such as "
            f"lambda: tk.replace_head(tk.load_backbone('resnet18'), 10)), so that every fold "
            f"starts fresh; got {type(build_model).__name__}."
        )
    folds = _splits(dataset, k, stratified, seed)
    eval_kwargs = {o: finetune_kwargs[o] for o in _SHARED_OPTIONS if o in finetune_kwargs}
    eval_kwargs.update(eval_options or {})
    reports, histories = [], []
    for train_idx, val_idx in folds:
        model = build_model()
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"cross_validate: build_model() returned {type(model).__name__}; it must return "
                "a model (a TransferModel from transferkit.replace_head)."
            )
        histories.append(_finetune(model, _subset(dataset, train_idx), **finetune_kwargs))
        reports.append(evaluate(model, _subset(dataset, val_idx), **eval_kwargs))
    return CrossValidationResult(reports, folds, histories, k=k, stratified=stratified,
                                 seed=seed)
