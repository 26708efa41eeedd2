"""mixup and cutmix on training batches (``finetune(mixup=0.2, cutmix=1.0)``), off by default.

Each training batch ``(x, y)`` goes through torchvision ``transforms.v2.MixUp`` (``mixup`` is
its Beta ``alpha``) or ``CutMix`` (``cutmix`` is its ``alpha``); with both, each batch picks one
of the two at random (``v2.RandomChoice``, as timm's ``Mixup`` switches). The targets become
soft ``(N, K)`` class probabilities (each row sums to 1) and the loss is PyTorch's cross-entropy
with probability targets (label smoothing and class weights apply as usual). Training accuracy
still counts the unmixed labels. Mixed images are new images, so a feature cache of the frozen
backbone's outputs does not apply: it is skipped with its notice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

__all__ = ["check_mixing", "make_mixer", "mixing_skip_reason"]


def check_mixing(cfg: Any) -> None:
    """``mixup`` / ``cutmix`` of a :class:`FinetuneConfig`, checked before any work."""
    for name in ("mixup", "cutmix"):
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v <= 0):
            raise ValueError(f"finetune: {name} must be None or a Beta alpha > 0 (0.2 for "
                             f"mixup and 1.0 for cutmix are the usual values), got {v!r}.")
    if (cfg.mixup is not None or cfg.cutmix is not None) and cfg.task != "multiclass":
        raise ValueError(f"finetune: mixup/cutmix mix class labels; they need "
                         f"task='multiclass', got {cfg.task!r}.")


def make_mixer(cfg: Any, num_classes: int) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``(x, y) -> (x, y)`` unchanged when off, else mixed images and soft targets."""
    if cfg.mixup is None and cfg.cutmix is None:
        return lambda x, y: (x, y)
    from torchvision.transforms import v2

    ops = ([v2.MixUp(alpha=float(cfg.mixup), num_classes=num_classes)] if cfg.mixup else []) + (
        [v2.CutMix(alpha=float(cfg.cutmix), num_classes=num_classes)] if cfg.cutmix else [])
    op = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)

    def mix(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return op(x, y.long())  # (N, C, H, W), (N, K) soft targets
    return mix


def mixing_skip_reason(cfg: Any) -> str | None:
    """Why the feature cache is off because of mixing (``None``: mixing is off)."""
    if cfg.mixup is None and cfg.cutmix is None:
        return None
    return "mixup/cutmix mix the training images, so the backbone must see each mixed batch"
