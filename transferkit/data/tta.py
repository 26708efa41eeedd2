"""Test-time augmentation: the views ``evaluate``, ``predict`` and ``calibrate`` average.

TTA runs after the one evaluation preprocessing (``data/preprocess.py``): each view is a
transform of the preprocessed batch ``(N, C, H, W)``; the model's logits over the original and
every view are averaged. ``"flip"`` is the original plus its horizontal mirror (timm's and
fastai's default). A list of torchvision ``transforms.v2`` transforms adds one view each (a
random transform draws one set of parameters per batch, as v2 does for a batched tensor).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

__all__ = ["resolve_tta", "tta_forward"]


def resolve_tta(tta: Any, where: str) -> list[Callable[[Tensor], Tensor]] | None:
    """The extra views of ``tta`` (``None``: no TTA), checked before any work.

    Args:
        tta: ``None``/``False`` (off), ``"flip"``, or a non-empty list of callables taking and
            returning a ``(N, C, H, W)`` tensor (torchvision v2 transforms).
        where: the calling verb, for the error message.
    """
    if tta is None or tta is False:
        return None
    if isinstance(tta, str):
        if tta != "flip":
            raise ValueError(f"{where}: tta must be None, 'flip' or a list of torchvision v2 "
                             f"transforms, got {tta!r}.")
        from torchvision.transforms import v2

        return [v2.RandomHorizontalFlip(p=1.0)]
    if isinstance(tta, Sequence) and len(tta) > 0 and all(callable(t) for t in tta):
        return list(tta)
    raise TypeError(f"{where}: tta must be None, 'flip' or a non-empty list of callables "
                    f"(torchvision v2 transforms), got {tta!r}.")


def tta_forward(model: Callable[[Tensor], Tensor], x: Tensor,
                views: list[Callable[[Tensor], Tensor]] | None) -> Tensor:
    """``model(x)``, or with ``views`` the mean of the logits over ``x`` and every view."""
    out = model(x)
    if not views:
        return out
    total = out.float()
    for view in views:
        v = view(x)
        if tuple(v.shape) != tuple(x.shape):
            raise ValueError(f"tta: a view changed the batch's shape {tuple(x.shape)} to "
                             f"{tuple(v.shape)}; TTA views must keep the crop size.")
        total = total + model(v).float()
    return total / (len(views) + 1)
