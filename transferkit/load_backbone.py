"""``load_backbone``: a registered backbone by name, with weights from a tag, a file or a dict."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .backbones import Backbone, ModuleBackbone, get_backbone_spec
from .backbones._base import BackboneSpec
from .errors import WeightsError
from .weights import WEIGHT_SUFFIXES, load_state_dict_file

__all__ = ["load_backbone"]

WeightsArg = str | os.PathLike | Mapping[str, Tensor] | None


def _is_path(weights: object) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (
        weights.endswith(WEIGHT_SUFFIXES) or os.sep in weights or os.path.exists(weights)
    )


def _build(spec: BackboneSpec, tag: str | None, kwargs: dict[str, Any]) -> Backbone:
    out = spec.builder(weights=tag, **kwargs)
    if isinstance(out, nn.Module) and not isinstance(out, Backbone):
        out = ModuleBackbone(out, spec, tag)
    if isinstance(out, Backbone):
        # What rebuilding it needs (save/load); builders may record more than the user passed.
        out.build_kwargs = {**kwargs, **getattr(out, "build_kwargs", {})}
        return out
    raise TypeError(
        f"The builder of backbone {spec.name!r} returned {type(out).__name__}; it must return "
        "a transferkit Backbone or a torch.nn.Module."
    )


def _check_tag(spec: BackboneSpec, tag: str) -> str:
    if spec.family in ("torchvision", "timm"):
        return tag  # their builders resolve tags and list the valid ones on a miss
    tags = spec.pretrained_tags
    if tag == "DEFAULT" and tags:
        return tags[0]
    if tag in tags:
        return tag
    raise WeightsError(
        f"Backbone {spec.name!r} has no pretrained weights named {tag!r}. Available: "
        f"{['DEFAULT', *tags] if tags else 'none (use weights=None or a file path)'}."
    )


def load_backbone(name: str, weights: WeightsArg = None, **kwargs: Any) -> Backbone:
    """Build the backbone registered as ``name``, without its original classifier.

    Args:
        name: a registered name (see :func:`transferkit.list_backbones`) or ``"timm/<model>"``.
        weights: ``None`` (random initialisation); ``"DEFAULT"`` or a pretrained tag of that
            model (``"IMAGENET1K_V1"``); a path to a ``.pth``/``.pt``/``.bin``/``.safetensors``
            file; or a state dict. Files and dicts may hold a whole classifier: its original
            head's keys are dropped, every other key must match. Files never run pickled code.
        **kwargs: passed to the architecture's builder (``image_size=64`` for a ViT, say).

    Returns:
        A :class:`~transferkit.backbones.Backbone`: ``forward(x)`` gives pooled features
        ``(N, num_features)``, ``forward_features(x)`` the unpooled output; ``data_config``
        and ``stage_names`` describe its preprocessing and freezing stages.

    Raises:
        UnknownNameError: no such backbone (the message suggests close names).
        WeightsError: an unknown tag, or a state dict that does not fit (keys are listed).
        MissingWeightsFileError: a weights path that does not exist.
        WeightsUnavailableError: pretrained weights that cannot be fetched offline.

    Example:
        >>> import torch, transferkit as tk
        >>> bb = tk.load_backbone("resnet18", weights=None)
        >>> bb(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 512])
    """
    spec = get_backbone_spec(name)
    if weights is None:
        return _build(spec, None, kwargs)
    if isinstance(weights, Mapping):
        backbone = _build(spec, None, kwargs)
        backbone.load_weights(weights)
        backbone.weights_tag = "state_dict"
        return backbone
    if _is_path(weights):
        state = load_state_dict_file(weights)
        backbone = _build(spec, None, kwargs)
        backbone.load_weights(state)
        backbone.weights_tag = str(Path(weights))
        return backbone
    if isinstance(weights, str):
        return _build(spec, _check_tag(spec, weights), kwargs)
    raise TypeError(
        "load_backbone: weights must be None, a pretrained tag (str), a file path or a state "
        f"dict, got {type(weights).__name__}."
    )
