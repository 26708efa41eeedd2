"""``lr_find``: Smith's learning-rate range test, run by the same engine as ``finetune``.

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_steps``
optimiser steps while the training loss is recorded and smoothed (an exponential moving
average with bias correction, as in fastai). The suggestion is the learning rate where the
smoothed loss falls fastest (the most negative slope against ``log10(lr)``). The test runs on
a copy of the model, so the model passed in is left exactly as it was.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import MissingDependencyError, TrainingError
from .transfer_model import TransferModel

__all__ = ["LRFinderResult", "lr_find"]


@dataclass
class LRFinderResult:
    """What the range test saw.

    Attributes:
        lrs: the learning rate of each step (the head's; backbone groups keep their ratio).
        losses: the smoothed training loss after each step.
        raw_losses: the loss of each batch as computed.
        suggestion: the learning rate at the steepest descent of the smoothed loss.
        stopped_early: the loss passed ``diverge_factor`` times its minimum (or became
            non-finite) before ``end_lr`` was reached.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float] = field(repr=False)
    suggestion: float
    stopped_early: bool

    def plot(self, path: str | Path | None = None) -> Any:
        """Loss against learning rate (log scale), the suggestion marked; needs matplotlib."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - the plot extra is installed in CI
            raise MissingDependencyError(
                "LRFinderResult.plot needs matplotlib: pip install 'transferkit[plot]'") from exc
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.lrs, self.losses)
        ax.axvline(self.suggestion, color="tab:red", linestyle="--",
                   label=f"suggestion {self.suggestion:.2e}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed training loss")
        ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


class _Stop(Exception):
    """Raised by the range callback to end the run."""


class _RangeTest:
    """A ``finetune`` callback: sets each step's learning rate and records the loss."""

    def __init__(self, start_lr: float, end_lr: float, num_steps: int, smooth: float,
                 diverge_factor: float) -> None:
        self.start, self.num_steps = start_lr, num_steps
        self.ratio = (end_lr / start_lr) ** (1 / max(1, num_steps - 1))
        self.smooth, self.diverge_factor = smooth, diverge_factor
        self.lrs: list[float] = []
        self.raw: list[float] = []
        self.smoothed: list[float] = []
        self.base: list[float] | None = None
        self.avg = 0.0
        self.stopped_early = False

    def _set(self, trainer: Any, step: int) -> None:
        groups = trainer.optimizer.param_groups
        if self.base is None:  # each group's lr relative to the head's (backbone_lr_mult)
            top = max(g["lr"] for g in groups)
            self.base = [g["lr"] / top for g in groups]
        lr = self.start * self.ratio ** step
        for g, rel in zip(groups, self.base):
            g["lr"] = lr * rel

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        if epoch == 0 and not self.lrs:
            self._set(trainer, 0)

    def on_batch_end(self, trainer: Any, batch: int, loss: float) -> None:
        step = len(self.raw)
        self.lrs.append(self.start * self.ratio ** step)
        self.raw.append(loss)
        self.avg = self.smooth * self.avg + (1 - self.smooth) * loss
        smoothed = self.avg / (1 - self.smooth ** (step + 1))
        self.smoothed.append(smoothed)
        if not math.isfinite(smoothed) or smoothed > self.diverge_factor * min(self.smoothed):
            self.stopped_early = True
            raise _Stop
        if step + 1 >= self.num_steps:
            raise _Stop
        self._set(trainer, step + 1)


def _steepest(lrs: list[float], losses: list[float], skip_start: int, skip_end: int) -> float:
    lo, hi = skip_start, max(skip_start + 2, len(lrs) - skip_end)
    x = np.log10(np.asarray(lrs[lo:hi]))
    y = np.asarray(losses[lo:hi])
    if len(x) < 3:
        raise TrainingError(
            f"lr_find: only {len(lrs)} steps were recorded before the loss diverged; there is "
            "no slope to read. Lower start_lr, or raise num_steps.")
    return float(10 ** x[int(np.argmin(np.gradient(y, x)))])


def lr_find(model: TransferModel, train_data: Any, *, start_lr: float = 1e-7,
            end_lr: float = 10.0, num_steps: int = 100, smooth: float = 0.98,
            diverge_factor: float = 4.0, skip_start: int = 10, skip_end: int = 5,
            strategy: str = "full", **options: Any) -> LRFinderResult:
    """Run the learning-rate range test on a copy of ``model``; return the curve and a suggestion.

    Args:
        model: a :class:`TransferModel`; it is not changed (the test trains a deep copy).
        train_data: anything :func:`finetune` takes.
        start_lr, end_lr: the range, swept exponentially (``0 < start_lr < end_lr``).
        num_steps: optimiser steps in the sweep (at least 10; the data is repeated as needed).
        smooth: the loss's moving-average factor (fastai's 0.98).
        diverge_factor: stop once the smoothed loss exceeds this many times its minimum.
        skip_start, skip_end: steps left out at each end when reading the steepest slope.
        strategy: ``"full"`` (everything trains) or ``"linear_probe"`` (the head alone, on
            cached features when the backbone is frozen).
        **options: other :func:`finetune` options (``batch_size``, ``optimizer``,
            ``augment``, ``image_size``, ``device``, ``seed``...). ``lr``, ``schedule``,
            ``epochs``, ``callbacks`` and ``val_data`` are set by the test.

    Returns:
        An :class:`LRFinderResult`; ``result.suggestion`` is the learning rate to pass to
        ``finetune(lr=...)``, and ``result.plot(path)`` draws the curve.

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), num_classes=2)
        >>> X, y = torch.rand(16, 3, 32, 32), torch.tensor([0, 1] * 8)
        >>> result = tk.lr_find(model, (X, y), num_steps=20, skip_start=2, skip_end=2,
        ...                     batch_size=8, progress=False)
        >>> 1e-7 <= result.suggestion <= 10
        True
    """
    from .finetune import finetune

    if not isinstance(model, TransferModel):
        raise TypeError(f"lr_find: model must be a TransferModel (from transferkit.replace_head),"
                        f" got {type(model).__name__}.")
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr),
                        ("diverge_factor", diverge_factor)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"lr_find: {name} must be a number > 0, got {value!r}.")
    if not start_lr < end_lr:
        raise ValueError(f"lr_find: start_lr must be below end_lr, got {start_lr} and {end_lr}.")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 10:
        raise ValueError(f"lr_find: num_steps must be an int >= 10, got {num_steps!r}.")
    if not 0 <= smooth < 1:
        raise ValueError(f"lr_find: smooth must be in [0, 1), got {smooth!r}.")
    if strategy not in ("full", "linear_probe"):
        raise ValueError(f"lr_find: strategy must be 'full' or 'linear_probe', got {strategy!r}.")
    taken = sorted({"lr", "schedule", "epochs", "callbacks", "val_data", "probe_epochs",
                    "checkpoint_dir", "resume", "early_stopping"} & set(options))
    if taken:
        raise ValueError(f"lr_find: {taken} are set by the range test itself; leave them out.")
    test = _RangeTest(start_lr, end_lr, num_steps, smooth, diverge_factor)
    probe = copy.deepcopy(model)
    rng = torch.get_rng_state()
    try:
        finetune(probe, train_data, strategy=strategy, lr=start_lr, schedule="constant",
                 epochs=num_steps, callbacks=[test], **options)
    except _Stop:
        pass
    except TrainingError:  # the loss became non-finite: the sweep has gone far enough
        test.stopped_early = True
    finally:
        torch.set_rng_state(rng)
        del probe
    suggestion = _steepest(test.lrs, test.smoothed, skip_start, skip_end)
    return LRFinderResult(lrs=test.lrs, losses=test.smoothed, raw_losses=test.raw,
                          suggestion=suggestion, stopped_early=test.stopped_early)
