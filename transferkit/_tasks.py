"""The task names, written once: every layer that checks or dispatches on a task imports them.

``replace_head`` (model surgery), ``training/losses.py`` and ``training/config.py`` (the
engine), ``metrics/`` and the verbs all read these; none keeps its own copy.
"""

from __future__ import annotations

__all__ = ["CLASSIFICATION_TASKS", "DENSE_TASKS", "TASKS", "dense_target"]

#: Tasks of the classification (pooled) heads; their report is ``metrics.classification``'s.
CLASSIFICATION_TASKS: tuple[str, ...] = ("multiclass", "multilabel", "regression")
#: Tasks whose output is a map at the input's size (their heads are dense, ``HeadSpec.dense``),
#: and the kind of per-pixel target each takes (``data/dense.py``'s ``TARGET_KINDS``).
DENSE_TASKS: dict[str, str] = {"segmentation": "mask", "image2image": "image"}
#: Every task ``finetune(task=...)`` accepts.
TASKS: tuple[str, ...] = CLASSIFICATION_TASKS + tuple(DENSE_TASKS)


def dense_target(task: str) -> str | None:
    """``"mask"`` / ``"image"`` for a dense task, ``None`` for classification and regression."""
    return DENSE_TASKS.get(task)
