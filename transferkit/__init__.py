"""transferkit: transfer learning for vision models on PyTorch and torchvision.

The workflow is five verbs: :func:`load_backbone` (a pretrained model), :func:`replace_head`
(the new task's top), :func:`freeze` / :func:`unfreeze` (what trains), :func:`finetune` and
:func:`evaluate`.
"""

from . import errors
from .backbones import (
    Backbone,
    BackboneSpec,
    DataConfig,
    get_backbone_spec,
    list_backbones,
    register_backbone,
)
from .data import stratified_split
from .finetune import EarlyStopping, finetune
from .freeze import FreezeSummary, freeze, unfreeze
from .history import History
from .heads import get_head_spec, list_heads, register_head
from .load_backbone import load_backbone
from .replace_head import replace_head
from .transfer_model import TransferModel

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "BackboneSpec",
    "DataConfig",
    "EarlyStopping",
    "FreezeSummary",
    "History",
    "TransferModel",
    "errors",
    "finetune",
    "freeze",
    "get_backbone_spec",
    "get_head_spec",
    "list_backbones",
    "list_heads",
    "load_backbone",
    "register_backbone",
    "register_head",
    "replace_head",
    "stratified_split",
    "unfreeze",
]
