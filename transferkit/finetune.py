"""``finetune``: train a :class:`TransferModel` on the target task with a transfer strategy."""

from __future__ import annotations

from typing import Any

from .training.averaging import averaging_callbacks
from .training.wise import wise_callbacks
from .training.lora import add_lora, check_lora, merge_lora
from .training.config import EarlyStopping, FinetuneConfig
from .training.history import History
from .training.loggers import make_loggers
from .training.trainer import Trainer
from .transfer_model import TransferModel
from .tracking import close_failed, finish_logging

__all__ = ["finetune", "FinetuneConfig", "EarlyStopping"]


def finetune(model: TransferModel, train_data: Any, val_data: Any = None, **options: Any
             ) -> History:
    """Train ``model`` on ``train_data`` with a transfer strategy; return the :class:`History`.

    Args:
        model: a :class:`TransferModel` from :func:`replace_head`.
        train_data: a torch ``Dataset``, a ``DataLoader`` (used as is), a pair ``(X, y)`` of
            tensors or arrays, or a path to an image folder (``root/<class>/<image>``).
            Tensor data is preprocessed from the backbone's ``data_config``: resize + centre
            crop (``augment=True`` trains on random resized crops + flips instead),
            grey repeated to RGB, normalisation. ``uint8`` pixels are scaled to [0, 1].
            ``image_size=64`` trains at that crop size and records it in the backbone's
            ``data_config``, so that ``evaluate``, ``predict`` and ``save`` use it too.
        val_data: the same kinds, evaluated after each epoch (``val_loss``, ``val_accuracy``).
        **options: see :class:`FinetuneConfig`. The main ones:
            ``epochs`` (5), ``lr`` (1e-3 for AdamW, 0.01 for SGD), ``strategy``
            (``"lp_ft"``: a linear probe for up to ``probe_epochs`` epochs, stopping when it
            converges, then ``epochs`` of full fine-tuning at ``backbone_lr_mult`` 0.3, the
            BatchNorm statistics kept as the probe saw them unless ``bn="train"``; ``"full"``, ``"linear_probe"``, ``"gradual"``, ``"lora"``: peft low-rank adapters on
            the frozen backbone with ``lora_rank`` (8), ``lora_alpha`` (2 x rank),
            ``lora_targets`` (default: every Linear and 1x1 convolution of the backbone),
            ``lora_dropout``, ``lora_merge`` (fold the adapters in at the end), see
            :mod:`transferkit.training.lora`), ``optimizer`` (``"adamw"``,
            ``"sgd"`` with ``momentum``, or a callable taking parameter groups),
            ``weight_decay``, ``layer_decay`` (layer-wise lr decay: the backbone's stages get
            ``lr * backbone_lr_mult * layer_decay**depth``, depth 1 for the deepest stage), ``bn`` (``"eval"``: BatchNorm in frozen parts, and in all of
            the backbone during lp_ft's second phase, keeps its running statistics;
            ``"train"``: batch statistics), ``schedule`` (``"cosine"``, ``"constant"``, ``"onecycle"``) and
            ``warmup_epochs``, ``task`` (``"multiclass"``, ``"multilabel"``, ``"regression"``,
            ``"segmentation"``; default: the model's ``task`` when set, e.g. by a dense head,
            else ``"multiclass"``) with ``loss`` (the values ``LOSSES[task]`` of
            :mod:`transferkit.training.losses` allow; segmentation: ``"ce"``, ``"dice"``,
            ``"ce+dice"``), ``ignore_index`` (255: mask pixels neither trained on nor scored),
            ``label_smoothing``, ``class_weights`` (or ``"balanced"``: inverse class
            frequencies, of pixels for segmentation), ``pos_weight``;
            ``batch_size``, ``num_workers``, ``grad_accum_steps``, ``clip_grad_norm``,
            ``amp``, ``channels_last`` (``"auto"``: the faster memory format, timed on the
            first training steps once per architecture, device, dtype and image size in the
            process; ``History.memory_format`` says what was chosen), ``compile``, ``device``;
            ``seed`` (the training's random draws; seed the head with
            ``replace_head(..., seed=)``: both seeds give the same weights in any process,
            with ``deterministic=True`` or a fixed ``channels_last``) and
            ``deterministic``; ``ema`` (a decay such as 0.999: the final model is the
            exponential moving average of the weights over optimizer steps, timm ModelEmaV3
            semantics, ``ema_warmup=True`` for its warmup) or ``swa`` (``True``: the equal
            average of the second half of the final phase's epochs, BatchNorm statistics
            recomputed; an int: its last ``swa`` epochs), see
            :mod:`transferkit.training.averaging`; ``wise_alpha`` (lp_ft: WiSE-FT, the
            final weights are ``(1 - alpha) * probe endpoint + alpha * fine-tuned``, BatchNorm
            statistics included; ``"auto"`` picks alpha in 0, 0.1, ..., 1 by validation
            accuracy, :mod:`transferkit.training.wise`; ``History.wise`` says which);
            ``early_stopping`` (an :class:`EarlyStopping` or a metric name);
            ``checkpoint_dir`` and ``resume``; ``callbacks`` (see :class:`Callback`);
            ``loggers`` (``["csv", "tensorboard", "mlflow"]`` or Logger objects) with
            ``log_dir`` and ``tracking_uri`` (docs/tracking.md); ``progress``;
            ``cache_features`` (on: a frozen backbone runs once per sample), ``cache_views``
            (default: 1 without augmentation, 2 augmented views with it, so that a probe costs
            at most two backbone passes; 0 turns the cache off under augmentation),
            ``decode_once`` (on: an image folder or a dataset of PIL images is decoded and
            resized once to ``uint8``, then cropped, flipped and normalised on batches; see
            :mod:`transferkit.data.decoded`),
            ``cache_dtype``, ``cache_memory_budget``; ``shuffle`` (``False`` keeps the data's
            order every epoch).
            Distributed (under ``torchrun``, see ``docs/distributed.md``): ``batch_size`` is
            per process; ``sync_batchnorm`` (SyncBatchNorm across processes, nccl only);
            ``dist_backend`` (default ``$TRANSFERKIT_DIST_BACKEND``, else nccl on CUDA and
            gloo on the CPU).
            Robustness: ``skip_bad_images`` (image folders: skip unreadable files with a
            warning instead of raising). ``checkpoint_dir`` is locked while a run trains into
            it; ``resume=True`` continues only the run the checkpoint holds (other options,
            data size or architecture raise ``ResumeError``). See ``docs/robustness.md``.

    Calling ``finetune`` again on the same model continues from its current weights with a
    fresh optimiser and schedule (and the strategy's phases from the start): the second call
    is a new run, not a resumed one.

    Returns:
        The :class:`History` of the run, one record per epoch.

    Raises:
        DataError: bad data, found before any training step (labels out of range, a class
            count that differs from the head's, an empty dataset, NaN inputs, wrong channels).
        TrainingError: the run diverged: the training or validation loss became NaN,
            infinite or absurdly large, or a weight became non-finite (the last checkpoint,
            the last finite model, is left intact).
        ResumeError: ``resume=True`` with a checkpoint of another run.
        FolderLockedError: another process trains into ``checkpoint_dir``.

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), num_classes=2)
        >>> X, y = torch.rand(8, 3, 32, 32), torch.tensor([0, 1] * 4)
        >>> history = tk.finetune(model, (X, y), epochs=1, strategy="full", progress=False)
        >>> len(history)
        1
    """
    if not isinstance(model, TransferModel):
        raise TypeError(
            f"finetune: model must be a TransferModel (from transferkit.replace_head), got "
            f"{type(model).__name__}."
        )
    if "task" not in options and getattr(model, "task", None) is not None:
        options["task"] = model.task  # a dense head's task, or what the model was trained for
    try:
        config = FinetuneConfig(**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            known = sorted(FinetuneConfig.__dataclass_fields__)
            raise TypeError(f"finetune: {exc}. Known options: {known}.") from None
        raise
    loggers = make_loggers(config.loggers, config.log_dir, config.tracking_uri)  # no files yet
    # weight averaging first: the loggers' on_train_end sees the averaged model
    if config.wise_alpha == "auto" and val_data is None:
        raise ValueError("finetune: wise_alpha='auto' sweeps alpha on the validation data; "
                         "pass val_data, or a number for wise_alpha.")
    config.callbacks = (*averaging_callbacks(config), *wise_callbacks(config),
                        *config.callbacks, *loggers)
    lora_targets = check_lora(model, config)  # strategy="lora": options and targets
    try:
        trainer = Trainer(model, train_data, val_data, config)
        if lora_targets is not None:
            add_lora(model, config, lora_targets)  # all checked: peft adapters go in
        history = trainer.fit()
        if config.lora_merge:
            merge_lora(model)
    except BaseException:
        close_failed(loggers)
        raise
    finish_logging(loggers, model, val_data, history, device=config.device)
    return history
