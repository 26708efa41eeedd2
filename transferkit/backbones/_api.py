"""The backbone registry: ``register_backbone``, ``list_backbones``, ``get_backbone_spec``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._registry import Registry
from ._base import BackboneSpec, DataConfig, WeightsInfo
from .timm_models import TIMM_PREFIX, timm_names, timm_spec  # timm itself loads on first use

__all__ = ["BACKBONES", "register_backbone", "list_backbones", "get_backbone_spec",
           "BackboneInfo", "backbone_info", "format_backbone_info"]

BACKBONES: Registry[BackboneSpec] = Registry("backbone", "list_backbones")


def register_backbone(
    name: str,
    *,
    num_features: int | None = None,
    data_config: DataConfig | None = None,
    pretrained_tags: Sequence[str] = (),
    stages: Mapping[str, Sequence[str]] | None = None,
    min_input_size: int = 32,
    source_categories: Sequence[str] | None = None,
    family: str = "user",
    description: str = "",
    replace: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a backbone builder under ``name`` (a decorator).

    The builder is called as ``builder(weights=None | tag, **kwargs)`` and returns either a
    :class:`~transferkit.backbones.Backbone` or a plain ``nn.Module`` whose ``forward`` (or
    ``forward_features``) gives a feature map ``(N, C, H, W)`` or vector ``(N, C)``.

    Args:
        name: lower_snake name; a taken name raises unless ``replace=True``.
        num_features: pooled feature size (required for a plain ``nn.Module``).
        data_config: preprocessing of the weights; ImageNet's defaults otherwise.
        pretrained_tags: the names the builder accepts as ``weights=``.
        stages: freezing stages as attribute paths of the module, input first.
        min_input_size: smallest square input the architecture accepts.
        source_categories: class names of the pretraining head, if any.

    Example:
        >>> import torch.nn as nn, transferkit as tk
        >>> @tk.register_backbone("tiny_cnn", num_features=8, replace=True)
        ... def tiny_cnn(weights=None):
        ...     return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> tk.load_backbone("tiny_cnn").num_features
        8
    """

    def make(fn: Callable[..., Any]) -> BackboneSpec:
        return BackboneSpec(
            name=name,
            builder=fn,
            num_features=num_features,
            family=family,
            data_config=data_config or DataConfig(),
            pretrained_tags=tuple(pretrained_tags),
            stages=stages,
            min_input_size=min_input_size,
            source_categories=tuple(source_categories) if source_categories else None,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
        )

    return BACKBONES.decorator(name, make, replace)


def _wants_timm(patterns: Iterable[str]) -> bool:
    return any(p.startswith(TIMM_PREFIX) for p in patterns)


def list_backbones(
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> list[str]:
    """Sorted names of the registered backbones, filtered by shell-style wildcards.

    ``timm`` models are a namespace, listed only when a pattern starts with ``"timm/"``
    (``list_backbones("timm/resnet*")``), so that the plain listing stays readable.

    Example:
        >>> import transferkit as tk
        >>> tk.list_backbones("resnet1*")
        ['resnet101', 'resnet152', 'resnet18']
    """
    inc = [include] if isinstance(include, str) else list(include or [])
    names = BACKBONES.names(inc or None, exclude)
    if _wants_timm(inc):
        import fnmatch

        exc = [exclude] if isinstance(exclude, str) else list(exclude or [])
        names += [
            n for n in timm_names()
            if any(fnmatch.fnmatchcase(n, p) for p in inc)
            and not any(fnmatch.fnmatchcase(n, p) for p in exc)
        ]
    return sorted(names)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` registered as ``name`` (or a ``"timm/<model>"`` name).

    Raises:
        UnknownNameError: no such backbone; the message names the closest ones.
    """
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        return timm_spec(name)
    return BACKBONES.get(name)


# -- facts for choosing one ---------------------------------------------------------------
@dataclass(frozen=True)
class BackboneInfo:
    """One backbone's facts for choosing between them (see :func:`backbone_info`).

    Attributes:
        name, family, description: as registered.
        num_features: pooled feature size (what a new head receives).
        input_size: side of the square input its default weights were evaluated at.
        weights: facts about its default pretrained weights, ``None`` when it has none or
            they are not known (timm models, most user backbones).
    """

    name: str
    family: str
    num_features: int | None
    input_size: int
    weights: WeightsInfo | None
    description: str = ""


def backbone_info(include: str | Iterable[str] | None = None,
                  exclude: str | Iterable[str] | None = None) -> list[BackboneInfo]:
    """Feature size, input size and the default weights' published size, ImageNet accuracy
    and cost, and whether they load offline, for the backbones :func:`list_backbones` names.

    Nothing is built or downloaded: the figures come from the weights' metadata (torchvision's
    ``Weights.meta``, Google's published table for the EfficientNet-Lites) and ``available``
    from looking for the file (torch.hub's cache, the pip package).

    Example:
        >>> import transferkit as tk
        >>> from transferkit.backbones import backbone_info
        >>> info = backbone_info("resnet18")[0]
        >>> info.num_features, info.weights.tag, info.weights.imagenet_top1
        (512, 'IMAGENET1K_V1', 69.758)
    """
    rows = []
    for name in list_backbones(include, exclude):
        spec = get_backbone_spec(name)
        rows.append(BackboneInfo(
            name=name, family=spec.family, num_features=spec.num_features,
            input_size=spec.data_config.crop_size,
            weights=spec.weights_info() if spec.weights_info else None,
            description=spec.description))
    return rows


def format_backbone_info(rows: Sequence[BackboneInfo]) -> str:
    """``rows`` as a text table, one line per backbone (what ``transferkit list --details``
    prints)."""
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    head = (f"{'backbone':22s} {'features':>8s} {'input':>5s} {'weights':15s} {'params':>7s} "
            f"{'top-1':>6s} {'GMACs':>6s} {'MB':>6s}  offline")
    lines = [head]
    for r in rows:
        w = r.weights
        lines.append(
            f"{r.name:22s} {num(r.num_features, 'd'):>8s} {r.input_size:5d} "
            f"{(w.tag if w else '-'):15s} "
            f"{(num(w.num_params / 1e6, '.1f') + 'M') if w and w.num_params else '-':>7s} "
            f"{num(w.imagenet_top1 if w else None, '.1f'):>6s} "
            f"{num(w.gmacs if w else None, '.2f'):>6s} {num(w.file_mb if w else None, '.1f'):>6s}"
            f"  {('yes' if w.available else 'no (downloads)') if w else '-'}")
    return "\n".join(lines)
