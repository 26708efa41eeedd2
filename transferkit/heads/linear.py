"""``linear``: global pooling, optional dropout, one linear layer (f(x) = W x + b)."""

from __future__ import annotations

from torch import nn

from ._api import register_head
from ._pool import GlobalPool


@register_head("linear", pooled=True)
def linear(in_features: int, num_classes: int, *, dropout: float = 0.0,
           pool: str = "avg") -> nn.Module:
    """Global average pool, dropout, linear: the standard transfer head."""
    return nn.Sequential(
        GlobalPool(pool), nn.Dropout(dropout) if dropout else nn.Identity(),
        nn.Linear(in_features, num_classes),
    )
