"""Every option of :func:`transferkit.finetune` as one validated dataclass.

The engine (:mod:`transferkit.training.trainer`) and the public verb both import it from here,
so configuration sits below both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._checks import check_choice, check_int
from .image2image import check_image2image_options
from .lora import check_lora_options
from .losses import TASKS, check_loss
from .optim import SCHEDULES
from .strategies import STRATEGIES

__all__ = ["FinetuneConfig", "EarlyStopping"]


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
    """Every option of :func:`finetune`, validated before anything is touched.

    Attributes:
        epochs: epochs of training (for ``lp_ft``: of its fine-tuning phase).
        lr: learning rate of the head; ``None``: 1e-3 for AdamW, 0.01 for SGD.
        strategy: ``"lp_ft"``, ``"full"``, ``"linear_probe"``, ``"gradual"`` or ``"lora"``
            (:mod:`transferkit.training.strategies`).
        probe_epochs: ``lp_ft``: at most this many epochs of linear probe first.
        optimizer: ``"adamw"``, ``"sgd"`` or a callable taking parameter groups.
        momentum: SGD's momentum.
        weight_decay: ``None``: 0.01 for AdamW, 0 for SGD; never on biases and norms.
        backbone_lr_mult: backbone lr as a fraction of ``lr``; ``None``: the strategy's
            default (0.3 in ``lp_ft``'s fine-tuning phase, 1.0 otherwise).
        layer_decay: layer-wise lr decay: stage at depth ``d`` from the head gets
            ``lr * backbone_lr_mult * layer_decay**d``.
        schedule: ``"cosine"``, ``"constant"`` or ``"onecycle"``, stepped per batch.
        warmup_epochs: linear warm-up before the schedule (fractions allowed).
        task: ``"multiclass"``, ``"multilabel"``, ``"regression"``, ``"segmentation"``,
            ``"image2image"``; the model's own task wins when it has one.
        loss: the task's loss by name (``LOSSES[task]``); ``None``: the task's default.
        ignore_index: dense targets: the label that counts nowhere (255, VOC's convention).
        perceptual_backbone, perceptual_stages, perceptual_weight: ``image2image``'s
            perceptual loss (:mod:`transferkit.training.perceptual`).
        label_smoothing: cross-entropy's label smoothing.
        class_weights: per-class loss weights, or ``"balanced"`` (from the label counts).
        pos_weight: ``multilabel``: BCE's positive weights.
        batch_size: samples per optimiser step and process (times ``grad_accum_steps``).
        num_workers: DataLoader workers; ``None``: chosen from the data's kind.
        grad_accum_steps: batches per optimiser step.
        clip_grad_norm: clip the gradients' global norm to this.
        amp: mixed precision: ``True``/``"bf16"``/``"fp16"`` (the dtype for the device is
            decided by :func:`transferkit._utils.autocast_dtype`).
        channels_last: memory format: ``"auto"`` times both on the first steps and keeps the
            faster (:mod:`transferkit.training.memory_format`), or ``True``/``False``.
        compile: ``torch.compile`` the model.
        device: ``None``: CUDA when available, else the CPU.
        seed: seeds the batch order, augmentation and dropout (the head: ``replace_head(seed=)``).
        deterministic: deterministic algorithms, contiguous memory format, no timing.
        augment: random resized crops and flips while training (off by default: measured
            better for short transfer runs, docs/finetune.md).
        transform: a custom training transform (torchvision v2) instead of the built-in one.
        image_size: train at this crop size and record it in the backbone's ``data_config``.
        bn: ``"eval"``: frozen BatchNorm (and all of it in ``lp_ft``'s second phase) keeps its
            running statistics; ``"train"``: batch statistics.
        early_stopping: an :class:`EarlyStopping` or a metric name.
        checkpoint_dir, resume: write a checkpoint each epoch; resume from the last one.
        callbacks: objects with the :class:`transferkit.training.callbacks.Callback` hooks.
        progress: progress bars and notices.
        cache_features: a frozen backbone runs once per sample (its features are cached).
        cache_views: augmented views cached for a frozen phase; ``None``: 1 without
            augmentation, 2 with it; 0: no cache under augmentation.
        cache_dtype: ``"float32"`` or ``"float16"`` for the cached features.
        cache_memory_budget: bytes of cache in memory before a disk memmap takes over.
        decode_once: image folders and PIL datasets decoded and resized once, to ``uint8``.
        shuffle: reshuffle the samples every epoch.
        sync_batchnorm: DDP: convert BatchNorm to ``SyncBatchNorm``.
        dist_backend: DDP backend; ``None``: ``TRANSFERKIT_DIST_BACKEND`` or NCCL on CUDA,
            gloo on the CPU.
        skip_bad_images: skip unreadable images in folders instead of raising.
        loggers, log_dir, tracking_uri: ``"csv"``, ``"tensorboard"``, ``"mlflow"`` or Logger
            objects, and where they write (docs/tracking.md).
        ema, ema_warmup: the final model is an EMA of the weights (timm ``ModelEmaV3``).
        swa: stochastic weight averaging over the last epochs (``True`` or a count).
        wise_alpha: WiSE-FT: interpolate the probe and fine-tuned endpoints (a float or
            ``"auto"``, chosen on the validation data).
        mixup, cutmix: torchvision v2 MixUp / CutMix alpha per batch.
        lora_rank, lora_alpha, lora_targets, lora_dropout, lora_merge: ``strategy="lora"``'s
            peft options (:mod:`transferkit.training.lora`).
    """

    epochs: int = 5
    lr: float | None = None
    strategy: str = "lp_ft"
    probe_epochs: int = 5
    optimizer: str | Callable = "adamw"
    momentum: float = 0.9
    weight_decay: float | None = None
    backbone_lr_mult: float | None = None
    layer_decay: float | None = None
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    task: str = "multiclass"
    loss: str | None = None
    ignore_index: int | None = 255
    perceptual_backbone: Any = None
    perceptual_stages: Any = None
    perceptual_weight: float | None = None
    label_smoothing: float = 0.0
    class_weights: Any = None
    pos_weight: Any = None
    batch_size: int = 32
    num_workers: int | None = None
    grad_accum_steps: int = 1
    clip_grad_norm: float | None = None
    amp: bool | str = False
    channels_last: bool | str | None = "auto"
    compile: bool = False
    device: str | torch.device | None = None
    seed: int = 0
    deterministic: bool = False
    augment: bool = False
    transform: Any = None
    image_size: int | None = None
    bn: str = "eval"
    early_stopping: EarlyStopping | None = None
    checkpoint_dir: str | os.PathLike | None = None
    resume: bool = False
    callbacks: Sequence[Any] = field(default_factory=tuple)
    progress: bool = True
    cache_features: bool = True
    cache_views: int | None = None
    cache_dtype: str = "float32"
    cache_memory_budget: int | None = None
    decode_once: bool = True
    shuffle: bool = True
    sync_batchnorm: bool = False
    dist_backend: str | None = None
    skip_bad_images: bool = False
    loggers: Sequence[Any] = field(default_factory=tuple)
    log_dir: str | os.PathLike | None = None
    tracking_uri: str | None = None
    ema: float | None = None
    ema_warmup: bool = False
    swa: bool | int = False
    wise_alpha: float | str | None = None
    mixup: float | None = None
    cutmix: float | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    lora_targets: Sequence[str] | None = None
    lora_dropout: float | None = None
    lora_merge: bool = False

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_int("probe_epochs", self.probe_epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("grad_accum_steps", self.grad_accum_steps, 1)
        _check_int("seed", self.seed, 0)
        if self.cache_views is not None:
            _check_int("cache_views", self.cache_views, 0)
        if not isinstance(self.channels_last, bool) and self.channels_last not in (None, "auto"):
            raise ValueError(f"finetune: channels_last must be True, False or 'auto' (timed on "
                             f"the first steps), got {self.channels_last!r}.")
        if self.image_size is not None:
            _check_int("image_size", self.image_size, 8)
        _one_of("strategy", self.strategy, STRATEGIES)
        check_lora_options(self)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("task", self.task, TASKS)
        check_loss(self.task, self.loss)
        perceptual = self.perceptual_options()
        if self.task == "image2image":
            check_image2image_options(self.loss, **perceptual)
        elif any(v is not None for v in perceptual.values()):
            raise ValueError(
                f"finetune: {sorted(k for k, v in perceptual.items() if v is not None)} apply "
                f"to task='image2image' only, not {self.task!r}.")
        if self.ignore_index is not None:
            _check_int("ignore_index", self.ignore_index, 0)
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
        for name, low in (("clip_grad_norm", "> 0"), ("backbone_lr_mult", ">= 0")):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not math.isfinite(value) or value < 0 or (
                    value == 0 and low == "> 0")):
                raise ValueError(f"finetune: {name} must be None or a number {low}, got "
                                 f"{value!r}.")
        if self.layer_decay is not None and (
                isinstance(self.layer_decay, bool) or not isinstance(self.layer_decay, (int, float))
                or not 0 < self.layer_decay <= 1):
            raise ValueError(f"finetune: layer_decay must be None or a number in (0, 1] (each "
                             f"stage below the head gets lr * layer_decay**depth; 0.75 is "
                             f"timm's usual value), got {self.layer_decay!r}.")
        if isinstance(self.callbacks, (str, bytes)) or not hasattr(self.callbacks, "__iter__"):
            raise TypeError(f"finetune: callbacks must be a list of callback objects, got "
                            f"{type(self.callbacks).__name__}. Wrap one callback in a list: "
                            "callbacks=[cb].")
        self.callbacks = tuple(self.callbacks)
        from .loggers import check_loggers

        self.loggers = check_loggers(self.loggers, self.log_dir, self.tracking_uri)
        if isinstance(self.early_stopping, str):
            self.early_stopping = EarlyStopping(metric=self.early_stopping)
        elif isinstance(self.early_stopping, dict):
            self.early_stopping = EarlyStopping(**self.early_stopping)
        if self.dist_backend is not None and not isinstance(self.dist_backend, str):
            raise TypeError(f"finetune: dist_backend must be None or a backend name such as "
                            f"'gloo' or 'nccl', got {self.dist_backend!r}.")
        from .averaging import check_averaging

        check_averaging(self)  # ema / swa (training/averaging.py)
        from .wise import check_wise

        check_wise(self)  # wise_alpha (training/wise.py)
        from .mixing import check_mixing

        check_mixing(self)  # mixup / cutmix (training/mixing.py)
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("finetune: resume=True needs checkpoint_dir, where the checkpoints "
                             "of the earlier run are.")

    def perceptual_options(self) -> dict[str, Any]:
        """The ``perceptual_*`` options of an image-to-image loss, as ``make_loss`` takes them."""
        return {"perceptual_backbone": self.perceptual_backbone,
                "perceptual_stages": self.perceptual_stages,
                "perceptual_weight": self.perceptual_weight}


def _check_int(name: str, value: object, low: int) -> None:
    check_int("finetune", name, value, low)


def _one_of(name: str, value: object, allowed: Sequence[object]) -> None:
    check_choice("finetune", name, value, allowed)
