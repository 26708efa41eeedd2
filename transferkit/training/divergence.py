"""When a run has diverged: one rule, checked after every epoch and before every checkpoint.

A run has diverged when its training loss is not finite (checked per batch by the trainer),
when any weight or BatchNorm statistic is not finite, or when the validation loss is not
finite or absurdly large: more than :data:`VAL_LOSS_FACTOR` times the loss of chance
(``ln K`` for ``K`` classes, ``K ln 2`` for multilabel) for classification, or times the first
epoch's validation loss for regression. Such a model is never written over a checkpoint, so
the last checkpoint stays the last good one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import TrainingError

__all__ = ["VAL_LOSS_FACTOR", "check_diverged", "first_non_finite", "watched_tensors"]

#: A validation loss this many times the chance-level loss means the run has diverged.
VAL_LOSS_FACTOR = 1e4


def watched_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The tensors a training step can change, by name: trainable parameters and the floating
    buffers of modules in training mode.

    Frozen parameters are left out (no step writes them; a frozen encoder is most of the
    model), and so are the buffers of modules in eval mode (a BatchNorm updates its running
    statistics only in training mode; a frozen encoder is kept in eval mode). The trainer
    takes this list once per phase, in the phase's training mode (walking every module of a
    backbone costs more than the check itself).
    """
    named = []
    for prefix, module in model.named_modules():
        own = [*((n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad),
               *(module.named_buffers(recurse=False) if module.training else ())]
        named += [(f"{prefix}.{n}" if prefix else n, t) for n, t in own
                  if t is not None and t.is_floating_point()]
    return named


def first_non_finite(model: nn.Module | Sequence[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first tensor of :func:`watched_tensors` (of ``model``, or that list
    itself) holding NaN or inf, else ``None``.

    The common case, everything finite, is settled by one sum per tensor: a sum is
    finite only if every element is (NaN and inf propagate), and a sum of finite values that
    overflows merely sends the check to the exact per-tensor test. ``isfinite`` over every
    element costs several times more (it writes a boolean tensor per weight).
    """
    named = watched_tensors(model) if isinstance(model, nn.Module) else model
    if not named:
        return None
    with torch.no_grad():
        sums: dict[torch.device, list[torch.Tensor]] = {}
        for _, t in named:
            sums.setdefault(t.device, []).append(t.sum(dtype=torch.float32))
        if all(bool(torch.isfinite(torch.stack(s).sum())) for s in sums.values()):
            return None
        for name, t in named:
            if not bool(torch.isfinite(t).all()):
                return name
    return None


def _chance_loss(task: str, num_classes: int) -> float | None:
    if task in ("multiclass", "segmentation"):
        return math.log(max(num_classes, 2))
    if task == "multilabel":
        return num_classes * math.log(2)
    return None


def check_diverged(model: nn.Module | Sequence[tuple[str, torch.Tensor]],
                   record: dict[str, Any], *, task: str, num_classes: int,
                   first_val_loss: float | None, where: str) -> None:
    """Raise :class:`TrainingError` when the model or ``record`` shows divergence.

    Args:
        model: the model after the epoch, or its :func:`watched_tensors`.
        record: the epoch's history record (``val_loss`` when validated).
        task, num_classes: for the chance-level loss.
        first_val_loss: the run's first validation loss (the scale for regression).
        where: ``"epoch 3"``, for the message.
    """
    fix = ("Lower lr, turn on clip_grad_norm, or check the data. The last checkpoint (if any) "
           "is intact: it holds the last finite model.")
    bad = first_non_finite(model)
    if bad is not None:
        raise TrainingError(f"The weights became NaN or infinite ({bad!r}) at {where}; training "
                            f"stopped. {fix}")
    val = record.get("val_loss")
    if val is None:
        return
    scale = _chance_loss(task, num_classes) or first_val_loss
    if not math.isfinite(val) or (scale is not None and scale > 0
                                  and val > VAL_LOSS_FACTOR * scale):
        raise TrainingError(
            f"The validation loss became {val:.4g} at {where} (diverged: "
            + (f"more than {VAL_LOSS_FACTOR:g} x {scale:.3g}" if math.isfinite(val) else
               "not finite") + f"); training stopped. {fix}"
        )
