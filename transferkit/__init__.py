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
from .calibrate import CalibrationResult, calibrate
from .cross_validate import CrossValidationResult, cross_validate
from .data import stratified_split
from .evaluate import evaluate
from .export import ExportResult, export
from .explain import Explanation, explain
from .finetune import finetune
from .training import EarlyStopping, FinetuneConfig
from .freeze import FreezeSummary, freeze, unfreeze
from .training import History
from .training.callbacks import Callback
from .training.loggers import CSVLogger, MLflowLogger, TensorBoardLogger
from .interpolate_weights import interpolate_weights
from .heads import get_head_spec, list_heads, register_head
from .load_backbone import load_backbone
from .lr_find import LRFinderResult, lr_find
from .metrics import EvalReport, compute_report
from .predict import Prediction, predict
from .selection import Ranking, rank_backbones
from .replace_head import replace_head
from .save import load, save
from .transfer_model import TransferModel

from ._version import __version__ as __version__  # re-exported

# Subpackages a user reaches as attributes (tk.datasets.animal_mnist, tk.reference.conv2d),
# imported on first use so that ``import transferkit`` stays light.
_LAZY_SUBMODULES = ("datasets", "reference")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'transferkit' has no attribute {name!r}")

__all__ = [
    "Backbone",
    "BackboneSpec",
    "CSVLogger",
    "CalibrationResult",
    "Callback",
    "CrossValidationResult",
    "DataConfig",
    "EarlyStopping",
    "EvalReport",
    "Explanation",
    "ExportResult",
    "FinetuneConfig",
    "FreezeSummary",
    "History",
    "LRFinderResult",
    "MLflowLogger",
    "Prediction",
    "Ranking",
    "TensorBoardLogger",
    "TransferModel",
    "calibrate",
    "compute_report",
    "cross_validate",
    "errors",
    "evaluate",
    "explain",
    "export",
    "finetune",
    "freeze",
    "get_backbone_spec",
    "get_head_spec",
    "interpolate_weights",
    "list_backbones",
    "list_heads",
    "load",
    "load_backbone",
    "lr_find",
    "predict",
    "rank_backbones",
    "register_backbone",
    "register_head",
    "replace_head",
    "save",
    "stratified_split",
    "unfreeze",
]
