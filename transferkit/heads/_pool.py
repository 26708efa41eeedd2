"""Pooling shared by the heads: maps ``(N, C, H, W)`` become vectors ``(N, C)``."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["GlobalPool"]

_POOLS = ("avg", "max", "avgmax")


class GlobalPool(nn.Module):
    """Global pooling of a feature map; a vector ``(N, C)`` passes through unchanged.

    Args:
        kind: ``"avg"``, ``"max"`` or ``"avgmax"`` (the mean of both, as in timm).
    """

    def __init__(self, kind: str = "avg") -> None:
        super().__init__()
        if kind not in _POOLS:
            raise ValueError(f"GlobalPool: kind must be one of {list(_POOLS)}, got {kind!r}.")
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:
            return x
        if x.ndim != 4:
            raise ValueError(
                f"A head expects backbone features (N, C, H, W) or (N, C), got {tuple(x.shape)}."
            )
        if self.kind == "avg":
            return x.mean(dim=(2, 3))
        mx = x.amax(dim=(2, 3))
        return mx if self.kind == "max" else 0.5 * (mx + x.mean(dim=(2, 3)))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
