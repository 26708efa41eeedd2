"""``calibrate``: post-hoc temperature scaling of a classifier on validation data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .data.sources import resolve_device
from .errors import DataError
from .metrics.classification import expected_calibration_error
from .metrics.temperature import fit_temperature

__all__ = ["calibrate", "CalibrationResult"]


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` fitted and what it changed, on the validation data.

    Attributes:
        temperature: the fitted temperature ``T`` (logits are divided by it; ``T > 1``
            softens over-confident predictions).
        nll_before, nll_after: mean negative log-likelihood at ``T = 1`` and at ``T``.
        ece_before, ece_after: expected calibration error (15 equal-width bins) before/after.
        accuracy: top-1 accuracy, the same before and after (the argmax does not move).
        n_samples: validation samples used.
    """

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    accuracy: float
    n_samples: int

    def __str__(self) -> str:
        return (f"temperature scaling on {self.n_samples} validation samples: T = "
                f"{self.temperature:.4f}\n"
                f"             before    after\n"
                f"  NLL      {self.nll_before:8.4f} {self.nll_after:8.4f}\n"
                f"  ECE      {self.ece_before:8.4f} {self.ece_after:8.4f}\n"
                f"  accuracy {self.accuracy:8.4f} {self.accuracy:8.4f}")


def _nll_ece(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = logits.double()
    nll = float(torch.nn.functional.cross_entropy(logits, y))
    probs = logits.softmax(dim=1).numpy()
    return nll, expected_calibration_error(probs, y.numpy())


def calibrate(
    model: nn.Module,
    val_data: Any,
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    amp: bool | str = False,
    tta: Any = None,
    max_iter: int = 100,
) -> CalibrationResult:
    """Fit one temperature on ``val_data`` (LBFGS on the NLL) and store it in ``model``.

    The model's raw logits on the validation data (preprocessed as :func:`evaluate` does) are
    gathered once; ``T`` minimises the mean cross-entropy of ``softmax(logits / T)``
    (:func:`transferkit.metrics.temperature.fit_temperature`). ``model.temperature = T`` is
    then set; :func:`evaluate` and :func:`predict` divide the logits by it (one function,
    ``apply_temperature``), :func:`save` / :func:`load` keep it, and an evaluation of the
    calibrated model lists ``ece_uncalibrated`` beside ``ece``. Calibrating again refits from
    the raw logits. ``model.temperature = None`` removes it; so does :func:`finetune` (with a
    notice), since training changes the logits the temperature was fitted on: calibrate again
    after fine-tuning.

    Args:
        model: a multiclass :class:`TransferModel` (trained: ``model.task`` is ``None`` or
            ``"multiclass"``).
        val_data: held-out data, in any form :func:`evaluate` takes (never the training data:
            its logits are over-confident).
        batch_size, num_workers, device, amp: as in :func:`evaluate`.
        tta: test-time augmentation used to produce the logits, as in :func:`evaluate`
            (calibrate with the ``tta`` you will evaluate and predict with).
        max_iter: LBFGS iterations.

    Returns:
        A :class:`CalibrationResult`: the temperature, NLL and ECE before and after, accuracy.

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), num_classes=2, seed=0)
        >>> X, y = torch.rand(16, 3, 32, 32), torch.tensor([0, 1] * 8)
        >>> result = tk.calibrate(model, (X, y))
        >>> model.temperature == result.temperature and result.nll_after <= result.nll_before
        True
    """
    from .evaluate import _batches, _gather, inference_context
    from .data.tta import resolve_tta

    if not hasattr(model, "backbone") or getattr(model, "dense", False):
        raise TypeError(
            f"calibrate: model must be a classification TransferModel (from replace_head), got "
            f"{type(model).__name__}{' with a dense head' if getattr(model, 'dense', 0) else ''}."
        )
    task = getattr(model, "task", None)
    if task not in (None, "multiclass"):
        raise ValueError(f"calibrate: temperature scaling is for multiclass models; this "
                         f"model's task is {task!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"calibrate: max_iter must be an int >= 1, got {max_iter!r}.")
    views = resolve_tta(tta, "calibrate")
    dev = resolve_device(device)
    with inference_context(model, dev):
        batches = _batches(val_data, model, batch_size, num_workers, dev)
        logits, y = _gather(model, batches, dev, amp, False, tta=views)
    if y.ndim != 1 or y.is_floating_point():
        raise DataError(f"calibrate: val_data must hold class indices (N,), got targets of "
                        f"shape {tuple(y.shape)} and dtype {y.dtype}.")
    y = y.long()
    if len(y) < 2:
        raise DataError("calibrate: val_data needs at least 2 samples to fit a temperature.")
    t = fit_temperature(logits, y, max_iter=max_iter)
    nll0, ece0 = _nll_ece(logits, y)
    nll1, ece1 = _nll_ece(logits / t, y)
    acc = float((logits.argmax(1) == y).double().mean())
    model.temperature = t
    return CalibrationResult(t, nll0, nll1, ece0, ece1, acc, int(len(y)))
