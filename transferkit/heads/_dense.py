"""What the dense heads share: the feature_info check and the upsampling to the input size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torch.nn import functional as F

__all__ = ["check_feature_info", "upsample_to"]


def check_feature_info(feature_info: object, head: str) -> list[dict[str, Any]]:
    """``feature_info`` as a list of dicts with int ``num_chs`` and ``reduction``, else a clear
    error (a dense head is built from a backbone's ``feature_info``, not an int)."""
    ok = isinstance(feature_info, Sequence) and not isinstance(feature_info, (str, bytes)) and all(
        isinstance(e, dict) and isinstance(e.get("num_chs"), int)
        and isinstance(e.get("reduction"), (int, float)) for e in feature_info)
    if not ok or not feature_info:
        raise TypeError(
            f"{head} head: expected the backbone's feature_info (a non-empty list of dicts with "
            f"'num_chs' and 'reduction', as Backbone.feature_info gives), got {feature_info!r}. "
            "Build dense heads with transferkit.replace_head(backbone, num_classes, "
            f"head={head!r})."
        )
    return [dict(e) for e in feature_info]


def upsample_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of a map ``(N, C, h, w)`` to ``size = (H, W)`` (identity when equal)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
