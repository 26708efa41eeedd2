"""The ``Callback`` protocol: hooks :class:`~transferkit.training.trainer.Trainer` calls.

A callback is any object; the trainer calls each hook it has (``getattr`` + call, so an object
with only ``on_epoch_end`` works, as before this protocol was written down). Subclass
:class:`Callback` to get no-op defaults and type checking. The trainer's attributes are public
for callbacks to read: ``trainer.model``, ``trainer.cfg`` (the :class:`FinetuneConfig`),
``trainer.history``, ``trainer.epoch``, ``trainer.optimizer``, ``trainer.dist`` (``is_main``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Callback", "CallbackProtocol", "HOOKS", "call_hook"]

#: Every hook, in the order of a run.
HOOKS = ("on_train_start", "on_epoch_start", "on_batch_end", "on_step_end", "on_epoch_end",
         "on_train_end")


@runtime_checkable
class CallbackProtocol(Protocol):
    """The full set of hooks (each optional for a duck-typed callback)."""

    def on_train_start(self, trainer: Any) -> None: ...
    def on_epoch_start(self, trainer: Any, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Any, batch: int, loss: float) -> None: ...
    def on_step_end(self, trainer: Any) -> None: ...
    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer: Any, history: Any) -> None: ...


class Callback:
    """Base class of ``finetune`` callbacks: override the hooks you need.

    Hooks:
        on_train_start(trainer): before the first epoch (after a resume is loaded).
        on_epoch_start(trainer, epoch): ``epoch`` counts over all phases, from 0.
        on_batch_end(trainer, batch, loss): after each training batch, its mean loss.
        on_step_end(trainer): after each optimizer step (every ``grad_accum_steps`` batches).
        on_epoch_end(trainer, record): the epoch's :class:`History` record (losses, metrics,
            ``lr`` per parameter group, ``images_per_second``...).
        on_train_end(trainer, history): after the last epoch (best weights restored).

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, trainer, record):
        ...         print(record["epoch"], round(record["train_loss"], 3))
    """

    def on_train_start(self, trainer: Any) -> None:
        """Before the first epoch."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Before each epoch."""

    def on_batch_end(self, trainer: Any, batch: int, loss: float) -> None:
        """After each training batch."""

    def on_step_end(self, trainer: Any) -> None:
        """After each optimizer step."""

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        """After each epoch, with its history record."""

    def on_train_end(self, trainer: Any, history: Any) -> None:
        """After training."""


def call_hook(obj: Any, hook: str, *args: Any) -> None:
    """Call ``obj.<hook>(*args)`` when ``obj`` has that hook (duck typing)."""
    fn = getattr(obj, hook, None)
    if callable(fn):
        fn(*args)
