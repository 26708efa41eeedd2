"""The exceptions transferkit raises, so that callers can catch narrowly.

Every error is also a built-in type (``ValueError``, ``TypeError``, ``FileNotFoundError``,
``RuntimeError``), so code that catches those keeps working.
"""

from __future__ import annotations

__all__ = [
    "TransferkitError",
    "UnknownNameError",
    "DuplicateNameError",
    "WeightsError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "UnsafeCheckpointError",
    "MissingWeightsFileError",
    "StageError",
    "NoSpatialFeaturesError",
    "DataError",
    "TrainingError",
    "WeightsPackageNotFoundError",
    "MissingDependencyError",
    "ModelFormatError",
    "ResumeError",
    "FolderLockedError",
    "ExportError",
    "ExportMismatchError",
]


class TransferkitError(Exception):
    """Base class of every error transferkit raises on purpose."""


class UnknownNameError(TransferkitError, ValueError, KeyError):
    """A backbone, head or other registered name that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message; show it as written
        return str(self.args[0]) if self.args else ""


class NoSpatialFeaturesError(TransferkitError, ValueError):
    """A dense head asked for on a backbone that gives no spatial feature map."""


class DuplicateNameError(TransferkitError, ValueError):
    """Registering a name that is already taken, without ``replace=True``."""


class WeightsError(TransferkitError, ValueError):
    """Weights that cannot be used for the model they were asked for."""


class WeightsMismatchError(WeightsError):
    """A state dict whose keys or shapes do not match the backbone (lists them)."""


class WeightsUnavailableError(WeightsError, RuntimeError):
    """Pretrained weights that cannot be obtained here (offline, package missing)."""


class UnsafeCheckpointError(WeightsError):
    """A checkpoint that would execute pickled code when loaded; it is refused."""


class MissingWeightsFileError(TransferkitError, FileNotFoundError):
    """A weights path that does not exist."""


class StageError(TransferkitError, ValueError):
    """A freezing stage that the backbone does not have."""


class DataError(TransferkitError, ValueError):
    """Training or evaluation data that cannot be used as given."""


class TrainingError(TransferkitError, RuntimeError):
    """Training that had to stop (for example a loss that became NaN)."""


class WeightsPackageNotFoundError(WeightsUnavailableError, ModuleNotFoundError):
    """The pip package that ships a backbone's pretrained weights is not installed.

    Also a ``ModuleNotFoundError``, so ``except ImportError`` catches it too.
    """


class MissingDependencyError(TransferkitError, ModuleNotFoundError):
    """An optional dependency (such as timm) that the requested feature needs is missing."""


class ModelFormatError(TransferkitError, ValueError):
    """A file that is not a model saved by ``transferkit.save`` (or is damaged)."""


class ResumeError(TransferkitError, ValueError):
    """``resume=True`` with options, data or an architecture that the checkpoint does not hold."""


class FolderLockedError(TransferkitError, RuntimeError):
    """Another process is training into the same ``checkpoint_dir``."""


class ExportError(TransferkitError, RuntimeError):
    """A model that could not be exported (names the operator or the layer that failed)."""


class ExportMismatchError(ExportError):
    """An exported model whose outputs differ from PyTorch's beyond the stated tolerance."""
