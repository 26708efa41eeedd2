"""Resuming safely: a checkpoint continues only the run that wrote it.

A checkpoint records the options that shape the run (epochs, learning rate and schedule,
strategy, batching, the data size, the loss) and the architecture (every weight's name and
shape).
``resume=True`` with anything else would continue a different run on the old one's state (a
cosine schedule stretched mid-way, an optimiser state for other parameters), so it raises
:class:`~transferkit.errors.ResumeError` naming each difference, before anything is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ResumeError
from .image2image import DEFAULT_PERCEPTUAL_WEIGHT
from .losses import LOSSES
from .strategies import plan_phases

__all__ = ["run_options", "check_resume", "check_architecture"]

#: The options that change the schedule or the batches, so a resume must keep them.
_KEYS = ("epochs", "probe_epochs", "lr", "strategy", "optimizer", "momentum", "weight_decay",
         "backbone_lr_mult", "schedule", "warmup_epochs", "grad_accum_steps", "task")
# and the loss (with ``perceptual_weight`` for the perceptual losses): see ``run_options``.


def run_options(config: Any, n_train: int, model: Any) -> dict[str, Any]:
    """The options of a run that a resume must keep, as plain values.

    The batch size is not among them: a run may resume with another number of processes or
    another batch size, and the schedule is re-seeked to the same point of training
    (``steps_per_epoch`` in the checkpoint; docs/distributed.md).
    """
    out: dict[str, Any] = {}
    for k in _KEYS:
        v = getattr(config, k)
        out[k] = v if v is None or isinstance(v, (bool, int, float, str)) else getattr(
            v, "__name__", type(v).__name__)
    # The backbone's lr as the phases resolve it (``None`` is the strategy's default, which a
    # version may change: lp_ft's went from 0.1 to 0.3), so a resume runs the same rates.
    out["backbone_lr_mult"] = [p.backbone_lr_mult for p in plan_phases(
        config.strategy, config.epochs, config.probe_epochs, config.backbone_lr_mult)]
    # The loss shapes the run too; ``None`` is the task's default loss, named so that
    # passing it explicitly on resume is no difference.
    loss = getattr(config, "loss", None)
    out["loss"] = loss if loss is not None else LOSSES.get(out["task"], (None,))[0]
    if "perceptual" in (out["loss"] or ""):
        weight = getattr(config, "perceptual_weight", None)
        out["perceptual_weight"] = float(DEFAULT_PERCEPTUAL_WEIGHT if weight is None else weight)
    out["n_train"] = int(n_train)
    out["backbone"] = getattr(getattr(model, "backbone", None), "name", None)
    out["head"] = getattr(model, "head_name", None)
    out["num_classes"] = getattr(model, "num_classes", None)
    return out


def check_resume(saved: dict[str, Any] | None, current: dict[str, Any], path: Path) -> None:
    """Raise :class:`ResumeError` when ``current`` options differ from the ``saved`` ones.

    Checkpoints written before options were recorded (``saved is None``) are not checked.
    """
    if saved is None:
        return
    diffs = [f"{k} {saved.get(k)!r} -> {current[k]!r}" for k in current
             if k in saved and saved[k] != current[k]]
    if diffs:
        raise ResumeError(
            f"finetune(resume=True): the checkpoint {str(path)!r} belongs to a run with other "
            f"options: {', '.join(diffs)}. Resume with the options that run started with, or "
            "start a new run in another checkpoint_dir (or without resume=True)."
        )


def check_architecture(state: dict[str, Any], model: nn.Module, path: Path) -> None:
    """Raise :class:`ResumeError` when the checkpoint's weights do not fit ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and hasattr(state[k], "shape") and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ResumeError(
            f"finetune(resume=True): the checkpoint {str(path)!r} holds another architecture: "
            f"{len(missing)} weights missing {missing[:3]}, {len(unexpected)} unexpected "
            f"{unexpected[:3]}, {len(shapes)} of other shapes {shapes[:3]}. Resume with the "
            "model that wrote it, or use another checkpoint_dir."
        )
