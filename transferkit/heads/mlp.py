"""``mlp``: pooled features through hidden layers (activation, optional BatchNorm, dropout)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._api import register_head
from ._pool import GlobalPool

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


@register_head("mlp", pooled=True)
def mlp(
    in_features: int,
    num_classes: int,
    *,
    hidden: int | Sequence[int] = (512,),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    pool: str = "avg",
) -> nn.Module:
    """A multi-layer perceptron on pooled features."""
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"mlp head: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}."
        )
    sizes = [hidden] if isinstance(hidden, int) else list(hidden)
    if not sizes or any(not isinstance(h, int) or h < 1 for h in sizes):
        raise ValueError(f"mlp head: hidden must be ints >= 1, got {hidden!r}.")
    layers: list[nn.Module] = [GlobalPool(pool)]
    width = in_features
    for h in sizes:
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(_ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
