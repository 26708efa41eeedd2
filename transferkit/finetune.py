"""``finetune``: train a :class:`TransferModel` on the target task with a transfer strategy."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .history import History
from .optim import SCHEDULES
from .strategies import STRATEGIES
from .tasks import TASKS
from .transfer_model import TransferModel

__all__ = ["finetune", "FinetuneConfig", "EarlyStopping"]


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``metric`` has not improved for ``patience`` epochs; restore the best weights.

    Args:
        metric: a key of the history (``"val_loss"``, ``"val_accuracy"``, ``"train_loss"``).
        patience: epochs without improvement before stopping.
        mode: ``"min"`` or ``"max"``; ``None`` guesses from the name (loss -> min).
        min_delta: smallest change that counts as an improvement.
    """

    metric: str = "val_loss"
    patience: int = 3
    mode: str | None = None
    min_delta: float = 0.0

    @property
    def resolved_mode(self) -> str:
        return self.mode or ("min" if "loss" in self.metric else "max")


@dataclass
class FinetuneConfig:
    """Every option of :func:`finetune`, validated (see its docstring)."""

    epochs: int = 5
    lr: float | None = None
    strategy: str = "lp_ft"
    probe_epochs: int = 5
    optimizer: str | Callable = "adamw"
    momentum: float = 0.9
    weight_decay: float | None = None
    backbone_lr_mult: float | None = None
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    task: str = "multiclass"
    label_smoothing: float = 0.0
    class_weights: Any = None
    pos_weight: Any = None
    batch_size: int = 32
    num_workers: int | None = None
    grad_accum_steps: int = 1
    clip_grad_norm: float | None = None
    amp: bool | str = False
    channels_last: bool | None = None
    compile: bool = False
    device: str | torch.device | None = None
    seed: int = 0
    deterministic: bool = False
    augment: bool = True
    transform: Any = None
    image_size: int | None = None
    bn: str = "eval"
    early_stopping: EarlyStopping | None = None
    checkpoint_dir: str | os.PathLike | None = None
    resume: bool = False
    callbacks: Sequence[Any] = field(default_factory=tuple)
    progress: bool = True
    cache_features: bool = True
    cache_views: int = 0
    cache_dtype: str = "float32"
    cache_memory_budget: int | None = None
    shuffle: bool = True
    sync_batchnorm: bool = False
    dist_backend: str | None = None

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_int("probe_epochs", self.probe_epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("grad_accum_steps", self.grad_accum_steps, 1)
        _check_int("seed", self.seed, 0)
        _check_int("cache_views", self.cache_views, 0)
        if self.image_size is not None:
            _check_int("image_size", self.image_size, 8)
        _one_of("strategy", self.strategy, STRATEGIES)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("task", self.task, TASKS)
        _one_of("bn", self.bn, ("eval", "train"))
        _one_of("cache_dtype", self.cache_dtype, ("float32", "float16"))
        _one_of("amp", self.amp, (False, True, "bf16", "fp16"))
        if self.lr is None:
            self.lr = 0.01 if self.optimizer == "sgd" else 1e-3
        if self.weight_decay is None:
            self.weight_decay = 0.01 if self.optimizer == "adamw" else 0.0
        for name in ("lr", "weight_decay", "label_smoothing", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"finetune: {name} must be a number >= 0, got {value!r}.")
        if self.lr == 0:
            raise ValueError("finetune: lr must be > 0, got 0.")
        if isinstance(self.early_stopping, str):
            self.early_stopping = EarlyStopping(metric=self.early_stopping)
        elif isinstance(self.early_stopping, dict):
            self.early_stopping = EarlyStopping(**self.early_stopping)
        if self.dist_backend is not None and not isinstance(self.dist_backend, str):
            raise TypeError(f"finetune: dist_backend must be None or a backend name such as "
                            f"'gloo' or 'nccl', got {self.dist_backend!r}.")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("finetune: resume=True needs checkpoint_dir, where the checkpoints "
                             "of the earlier run are.")


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"finetune: {name} must be an int >= {low}, got {value!r}.")
    if value < low:
        raise ValueError(f"finetune: {name} must be an int >= {low}, got {value}.")


def _one_of(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"finetune: {name} must be one of {list(allowed)}, got {value!r}.")


def finetune(model: TransferModel, train_data: Any, val_data: Any = None, **options: Any
             ) -> History:
    """Train ``model`` on ``train_data`` with a transfer strategy; return the :class:`History`.

    Args:
        model: a :class:`TransferModel` from :func:`replace_head`.
        train_data: a torch ``Dataset``, a ``DataLoader`` (used as is), a pair ``(X, y)`` of
            tensors or arrays, or a path to an image folder (``root/<class>/<image>``).
            Tensor data is preprocessed from the backbone's ``data_config``: random resized
            crop + flip for training (``augment=False`` turns it off), resize + centre crop,
            grey repeated to RGB, normalisation. ``uint8`` pixels are scaled to [0, 1].
            ``image_size=64`` trains at that crop size and records it in the backbone's
            ``data_config``, so that ``evaluate``, ``predict`` and ``save`` use it too.
        val_data: the same kinds, evaluated after each epoch (``val_loss``, ``val_accuracy``).
        **options: see :class:`FinetuneConfig`. The main ones:
            ``epochs`` (5), ``lr`` (1e-3 for AdamW, 0.01 for SGD), ``strategy``
            (``"lp_ft"``: a linear probe for up to ``probe_epochs`` epochs, stopping when it
            converges, then ``epochs`` of full fine-tuning at ``backbone_lr_mult`` 0.1, the
            BatchNorm statistics kept as the probe saw them unless ``bn="train"``; ``"full"``, ``"linear_probe"``, ``"gradual"``), ``optimizer`` (``"adamw"``,
            ``"sgd"`` with ``momentum``, or a callable taking parameter groups),
            ``weight_decay``, ``bn`` (``"eval"``: BatchNorm in frozen parts, and in all of
            the backbone during lp_ft's second phase, keeps its running statistics;
            ``"train"``: batch statistics), ``schedule`` (``"cosine"``, ``"constant"``, ``"onecycle"``) and
            ``warmup_epochs``, ``task`` (``"multiclass"``, ``"multilabel"``, ``"regression"``)
            with ``label_smoothing``, ``class_weights`` (or ``"balanced"``), ``pos_weight``;
            ``batch_size``, ``num_workers``, ``grad_accum_steps``, ``clip_grad_norm``,
            ``amp``, ``channels_last``, ``compile``, ``device``; ``seed`` and
            ``deterministic``; ``early_stopping`` (an :class:`EarlyStopping` or a metric name);
            ``checkpoint_dir`` and ``resume``; ``callbacks``; ``progress``;
            ``cache_features`` (on: a frozen backbone runs once per sample), ``cache_views``,
            ``cache_dtype``, ``cache_memory_budget``; ``shuffle`` (``False`` keeps the data's
            order every epoch).
            Distributed (under ``torchrun``, see ``docs/distributed.md``): ``batch_size`` is
            per process; ``sync_batchnorm`` (SyncBatchNorm across processes, nccl only);
            ``dist_backend`` (default ``$TRANSFERKIT_DIST_BACKEND``, else nccl on CUDA and
            gloo on the CPU).

    Returns:
        The :class:`History` of the run, one record per epoch.

    Raises:
        DataError: bad data, found before any training step (labels out of range, a class
            count that differs from the head's, an empty dataset, NaN inputs, wrong channels).
        TrainingError: the loss became NaN or infinite (the last checkpoint is left intact).

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), num_classes=2)
        >>> X, y = torch.rand(8, 3, 32, 32), torch.tensor([0, 1] * 4)
        >>> history = tk.finetune(model, (X, y), epochs=1, strategy="full", progress=False)
        >>> len(history)
        1
    """
    from ._trainer import Trainer

    if not isinstance(model, TransferModel):
        raise TypeError(
            f"finetune: model must be a TransferModel (from transferkit.replace_head), got "
            f"{type(model).__name__}."
        )
    try:
        config = FinetuneConfig(**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            known = sorted(FinetuneConfig.__dataclass_fields__)
            raise TypeError(f"finetune: {exc}. Known options: {known}.") from None
        raise
    return Trainer(model, train_data, val_data, config).fit()
