"""WiSE-FT (Wortsman et al. 2022): the weight-space ensemble of lp_ft's two endpoints.

``finetune(strategy="lp_ft", wise_alpha=...)`` keeps the probe endpoint (the pretrained
backbone with the fitted probe head, BatchNorm statistics included) and at the end of training
replaces the model's weights with ``(1 - alpha) * probe + alpha * finetuned`` over every float
tensor of the state dict (:func:`interpolate_state`). ``alpha="auto"`` evaluates
``alpha = 0, 0.1, ..., 1`` on the validation data and keeps the best (highest validation
accuracy, ties to the lower validation loss; the loss alone for regression): the two endpoints
are in the sweep, so the choice is never worse on the validation data than either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .callbacks import Callback

__all__ = ["interpolate_state", "WiSEFT", "check_wise", "AUTO_ALPHAS"]

#: The sweep of ``wise_alpha="auto"``.
AUTO_ALPHAS = tuple(i / 10 for i in range(11))


def interpolate_state(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float
                      ) -> dict[str, Tensor]:
    """``torch.lerp(a, b, alpha)`` for every float tensor: exactly ``a`` at 0, ``b`` at 1.

    Integer tensors (BatchNorm's ``num_batches_tracked``) come from ``a`` when
    ``alpha < 0.5``, else from ``b``. Both must have the same keys, shapes and dtypes.
    """
    if set(a) != set(b):
        diff = sorted(set(a) ^ set(b))[:5]
        raise ValueError(f"interpolate_weights: the two models' state dicts differ in keys "
                         f"{diff}; interpolate two copies of one architecture.")
    out = {}
    for k, va in a.items():
        vb = b[k]
        if va.shape != vb.shape or va.dtype != vb.dtype:
            raise ValueError(f"interpolate_weights: {k!r} is {tuple(va.shape)} {va.dtype} in "
                             f"the first model and {tuple(vb.shape)} {vb.dtype} in the second.")
        if va.is_floating_point():
            out[k] = torch.lerp(va, vb.to(va.device), float(alpha))
        else:
            out[k] = (va if alpha < 0.5 else vb).clone()
    return out


def check_alpha(alpha: Any, where: str, allow_auto: bool) -> None:
    ok = (allow_auto and alpha == "auto") or (
        not isinstance(alpha, bool) and isinstance(alpha, (int, float))
        and math.isfinite(alpha) and 0 <= alpha <= 1)
    if not ok:
        auto = ", or 'auto' (swept on the validation data)" if allow_auto else ""
        raise ValueError(f"{where}: alpha must be a number in [0, 1] (0: the first/probe "
                         f"endpoint, 1: the second/fine-tuned one){auto}, got {alpha!r}.")


def check_wise(cfg: Any) -> None:
    """``wise_alpha`` of a :class:`FinetuneConfig`, checked before any work."""
    if cfg.wise_alpha is None:
        return
    check_alpha(cfg.wise_alpha, "finetune: wise_alpha", allow_auto=True)
    if cfg.strategy != "lp_ft":
        raise ValueError(f"finetune: wise_alpha interpolates lp_ft's probe and fine-tuned "
                         f"endpoints; it needs strategy='lp_ft', got {cfg.strategy!r}.")
    if cfg.early_stopping is not None or cfg.resume:
        raise ValueError("finetune: wise_alpha cannot be combined with early_stopping or "
                         "resume here (the probe endpoint is not kept in checkpoints).")


class WiSEFT(Callback):
    """Keeps the probe endpoint; at the end sets the interpolated (or swept) weights."""

    def __init__(self, alpha: float | str) -> None:
        self.alpha = alpha
        self.probe: dict[str, Tensor] | None = None

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        if record["phase"] == "probe":  # the last probe epoch's weights are the endpoint
            self.probe = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    def on_train_end(self, trainer: Any, history: Any) -> None:
        if self.probe is None:
            return
        model = trainer.model
        tuned = {k: v.detach().clone() for k, v in model.state_dict().items()}
        sweep: dict[float, dict[str, float]] = {}
        alphas = AUTO_ALPHAS if self.alpha == "auto" else (float(self.alpha),)
        for a in alphas:
            model.load_state_dict(interpolate_state(self.probe, tuned, a))
            if self.alpha == "auto":
                sweep[a] = trainer._validate()
        best = alphas[0] if self.alpha != "auto" else min(sweep, key=lambda a: (
            -sweep[a].get("val_accuracy", 0.0), sweep[a]["val_loss"], -a))
        model.load_state_dict(interpolate_state(self.probe, tuned, best))
        history.wise = {"alpha": best, "sweep": sweep}


def wise_callbacks(cfg: Any) -> tuple[Callback, ...]:
    return (WiSEFT(cfg.wise_alpha),) if cfg.wise_alpha is not None else ()
