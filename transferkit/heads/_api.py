"""The head registry: a head is built from ``(in_features, num_classes, **options)``.

A head receives the backbone's unpooled output, a map ``(N, C, H, W)`` or a vector ``(N, C)``,
and owns its pooling, so that heads which need the spatial map (``vgg_classifier``) and heads
which pool (``linear``) plug into any backbone alike. The feature cache gives a head what it
sees at inference: the map, unless the head declares ``pooled=True`` (it average-pools first,
so the cache may keep only the pooled vector).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .._registry import Registry

__all__ = ["HEADS", "HeadSpec", "register_head", "list_heads", "get_head_spec", "build_head",
           "check_head_options"]


@dataclass(frozen=True)
class HeadSpec:
    """A registered head builder and what it needs.

    Attributes:
        name: registry name.
        builder: ``builder(in_features, num_classes, **options) -> nn.Module``.
        pooled: the head's first step is a global average pool (with its ``pool`` option
            ``"avg"``), so feature caches may keep pooled vectors instead of maps. ``False``
            (the default, safe for any head): caches keep the map the head reads.
        description: one line for listings.
        dense: a dense (per-pixel) head: ``builder(feature_info, num_classes, **options)``
            gets the backbone's :attr:`~transferkit.backbones.Backbone.feature_info` (a list
            of dicts, shallow to deep) instead of ``in_features``, and the module's
            ``forward(features, size)`` gets the stage maps (a list, as
            ``Backbone.forward_stages`` returns them) and the input's ``(H, W)``, and returns
            logits ``(N, num_classes, H, W)``. It reads only the maps at the indices in its
            ``in_stages`` attribute (all when it has none).
    """

    name: str
    builder: Callable[..., nn.Module]
    pooled: bool = False
    description: str = ""
    dense: bool = False

    @property
    def needs_map(self) -> bool:
        """The head reads the map (not only its average): the opposite of :attr:`pooled`."""
        return not self.pooled


HEADS: Registry[HeadSpec] = Registry("head", "list_heads")


def register_head(
    name: str, *, pooled: bool = False, needs_map: bool | None = None, dense: bool = False,
    replace: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a head builder under ``name`` (a decorator); usable by name at once.

    Args:
        name: the registry name (lower_snake).
        pooled: declare that the head starts with a global *average* pool; ``finetune``'s
            feature cache then keeps pooled vectors (smaller) instead of maps. Leave it
            ``False`` for a head that max-pools, attends or keeps space: it is then trained on
            the same maps it sees at inference.
        needs_map: the older spelling: ``needs_map=True`` is the default, ``needs_map=False``
            means ``pooled=True``.
        dense: a per-pixel head (segmentation, image-to-image): see :class:`HeadSpec` for the
            builder's and the module's signatures.
        replace: replace a head registered under ``name`` (else a duplicate raises).

    Example:
        >>> import torch.nn as nn, transferkit as tk
        >>> @tk.register_head("two_layer", replace=True)
        ... def two_layer(in_features, num_classes, hidden=32):
        ...     return nn.Sequential(tk.heads.GlobalPool(), nn.Linear(in_features, hidden),
        ...                          nn.ReLU(), nn.Linear(hidden, num_classes))
        >>> "two_layer" in tk.list_heads()
        True
    """

    if needs_map and pooled:
        raise ValueError(
            f"register_head({name!r}): needs_map=True contradicts pooled=True; pass "
            "pooled=True for a head that average-pools first, nothing for one that reads the map."
        )
    pooled = (pooled or needs_map is False) and not dense

    def make(fn: Callable[..., nn.Module]) -> HeadSpec:
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        return HeadSpec(name=name, builder=fn, pooled=pooled, description=doc, dense=dense)

    return HEADS.decorator(name, make, replace)


def list_heads(include: str | None = None, exclude: str | None = None) -> list[str]:
    """Sorted names of the registered heads, filtered by shell-style wildcards."""
    return HEADS.names(include, exclude)


def get_head_spec(name: str) -> HeadSpec:
    """The :class:`HeadSpec` registered as ``name``; a miss names the closest heads."""
    return HEADS.get(name)


def check_head_options(name: str, **options: Any) -> None:
    """Raise the TypeError of :func:`build_head` for options the head ``name`` does not take,
    without building anything (so callers can check before they change a model)."""
    spec = HEADS.get(name)
    try:
        inspect.signature(spec.builder).bind(None, None, **options)
    except TypeError as exc:
        params = [
            p for p in list(inspect.signature(spec.builder).parameters)[2:] if p != "kwargs"
        ]
        raise TypeError(
            f"Head {name!r} does not take these options {sorted(options)} ({exc}). "
            f"It accepts: {params}."
        ) from None


def build_head(name: str, in_features: Any, num_classes: int, **options: Any) -> nn.Module:
    """Build the head ``name``; unknown options raise a TypeError listing the accepted ones.

    ``in_features`` is the pooled feature size, or for a dense head (``HeadSpec.dense``) the
    backbone's ``feature_info``.
    """
    spec = HEADS.get(name)
    check_head_options(name, **options)
    bound = inspect.signature(spec.builder).bind(in_features, num_classes, **options)
    return spec.builder(*bound.args, **bound.kwargs)
