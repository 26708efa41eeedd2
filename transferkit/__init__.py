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
from .cross_validate import CrossValidationResult, cross_validate
from .data import stratified_split
from .evaluate import evaluate
from .finetune import EarlyStopping, finetune
from .freeze import FreezeSummary, freeze, unfreeze
from .history import History
from .heads import get_head_spec, list_heads, register_head
from .load_backbone import load_backbone
from .metrics import EvalReport, compute_report
from .predict import Prediction, predict
from .rank_backbones import Ranking, rank_backbones
from .replace_head import replace_head
from .save import load, save
from .transfer_model import TransferModel

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "BackboneSpec",
    "CrossValidationResult",
    "DataConfig",
    "EarlyStopping",
    "EvalReport",
    "FreezeSummary",
    "History",
    "Prediction",
    "Ranking",
    "TransferModel",
    "compute_report",
    "cross_validate",
    "errors",
    "evaluate",
    "finetune",
    "freeze",
    "get_backbone_spec",
    "get_head_spec",
    "list_backbones",
    "list_heads",
    "load",
    "load_backbone",
    "predict",
    "rank_backbones",
    "register_backbone",
    "register_head",
    "replace_head",
    "save",
    "stratified_split",
    "unfreeze",
]
