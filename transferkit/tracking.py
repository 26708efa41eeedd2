"""The end of a logged ``finetune`` run: the final report and the saved model, to each logger.

Kept beside the verbs (it calls :func:`evaluate` and :func:`save`); the loggers themselves live
in :mod:`transferkit.training.loggers`, below the verbs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .training.loggers import Logger

__all__ = ["finish_logging"]


def finish_logging(loggers: Sequence[Any], model: Any, val_data: Any, history: Any,
                   *, device: Any = None) -> None:
    """Evaluate on ``val_data`` (when given), save the model to a temporary folder, hand both
    to every :class:`Logger` (``log_final``), then close the runs."""
    active = [lg for lg in loggers if isinstance(lg, Logger) and lg.started]
    if not active or int(os.environ.get("RANK", "0")) != 0:
        return
    from .evaluate import evaluate
    from .save import save

    report = None
    if val_data is not None and getattr(model, "task", None) not in ("image2image",):
        report = evaluate(model, val_data, progress=False, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        save(model, Path(tmp) / "model")
        for lg in active:
            lg.log_final(history=history, report=report, model_dir=tmp)
    for lg in active:
        lg.close()


def close_failed(loggers: Sequence[Any]) -> None:
    """Mark the runs of ``loggers`` as failed (training raised)."""
    for lg in loggers:
        if isinstance(lg, Logger):
            lg.close(failed=True)
