"""The training engine behind :func:`transferkit.finetune`: configuration, the trainer,
strategies, optimisers and schedules, losses, the feature cache, checkpoints and the history.

Nothing here imports the public verbs; the verbs import from here.
"""

from .config import EarlyStopping, FinetuneConfig
from .history import History

__all__ = ["EarlyStopping", "FinetuneConfig", "History"]
