"""The training engine behind :func:`transferkit.finetune`.

One epoch is: sample order (torch's DistributedSampler order, also for one process) -> batches
(from memory, from DataLoader workers, or from the feature cache) -> forward, loss, backward,
optimiser and schedule steps -> validation -> history record -> checkpoint -> callbacks.
Phases (see :mod:`transferkit.strategies`) change what is frozen and rebuild the optimiser.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from .checkpoint import LAST, atomic_save, load_checkpoint, rng_state, set_rng_state
from .._utils import autocast, autocast_dtype
from ..data.sources import BatchPrep, Source, as_source, default_workers, fix_channels, resolve_device
from ..distributed import DistContext, shard_positions
from ..freeze import freeze_state, load_freeze_state
from ..data.dense import batch_prep
from .._log import notice, progress_bar
from ..metrics.temperature import clear_temperature
from ..errors import DataError, TrainingError
from ..backbones._base import is_batchnorm
from .dense_cache import gather_dense_cache
from .feature_cache import (DEFAULT_MEMORY_BUDGET, FeatureCache, build_cache, cache_skip_reason,
                            default_cache_views, gather_cache)
from .callbacks import call_hook
from .mixing import make_mixer, mixing_skip_reason
from .config import FinetuneConfig
from .resume import check_architecture, check_resume, run_options
from .._io import folder_lock, remove_stale_tmp
from .divergence import check_diverged, first_non_finite, watched_tensors
from .losses import check_class_count
from .history import History
from .memory_format import TrainFormat
from ..data.decoded import decodable, decode_once
from .optim import make_optimizer, make_scheduler, param_groups
from .strategies import Phase, apply_phase, plan_phases
from .losses import (batch_correct, check_label_range, check_targets, check_task_fits_head,
                     dense_target, has_accuracy, make_loss)
from ..transfer_model import TransferModel

__all__ = ["Trainer"]


class Trainer:
    """Runs one ``finetune`` call. Attributes are public for callbacks to read."""

    def __init__(self, model: TransferModel, train_data: Any, val_data: Any,
                 config: FinetuneConfig) -> None:
        self.model, self.cfg = model, config
        self.device = resolve_device(config.device)
        self.dist = DistContext.from_env(self.device, backend=config.dist_backend)
        self.device = self.dist.device  # cuda:LOCAL_RANK under torchrun
        # Everything is checked before the model changes (a call that raises leaves it as it
        # was): task, ignore_index and data_config are written at the end of __init__.
        self.data_config = model.backbone.data_config
        if config.image_size is not None:
            self.data_config = self.data_config.with_image_size(config.image_size)
        names, skip = model.class_names, config.skip_bad_images  # folders match by name
        check_task_fits_head(config.task, model)
        self.target = target = dense_target(config.task)  # None, or the per-pixel target
        self.train_source = as_source(train_data, self.data_config, train=True,
                                      augment=config.augment, transform=config.transform,
                                      class_names=names, skip_bad_images=skip, target=target)
        self.val_source = None if val_data is None else as_source(
            val_data, self.data_config, train=False, augment=False, transform=config.transform,
            class_names=names, skip_bad_images=skip, target=target)
        self.phases = plan_phases(config.strategy, config.epochs, config.probe_epochs,
                                  config.backbone_lr_mult)
        self.history = History()
        self.epoch = 0  # epochs completed over all phases
        self._watched: tuple[Phase | None, list] = (None, [])  # divergence.watched_tensors
        self._check_data()
        self.criterion = make_loss(
            config.task, label_smoothing=config.label_smoothing,
            class_weights=config.class_weights, pos_weight=config.pos_weight,
            targets=self.train_source.targets, num_classes=model.num_classes,
            loss=config.loss, ignore_index=config.ignore_index,
            perceptual=config.perceptual_options(),
        ).to(self.device)
        self.mix = make_mixer(config, model.num_classes)  # mixup/cutmix, else (x, y) as is
        self._early: dict[str, Any] = {"best": None, "epoch": None, "bad": 0, "state": None}
        self.cache: FeatureCache | None = None
        self.val_cache: FeatureCache | None = None
        self.cache_forward_samples = 0  # samples the backbone saw while building caches
        self.val_data = val_data
        self._check_early_stopping()
        # -- all checked: now the model records the run's task and preprocessing --
        stale = clear_temperature(model)  # training changes the logits: calibrate's T is stale
        if stale is not None:
            notice(f"finetune: the calibrated temperature T = {stale:.4g} was removed "
                   "(fine-tuning changes the logits); call transferkit.calibrate(model, "
                   "val_data) again after training.")
        model.task = config.task  # save/evaluate/predict read it
        if config.task == "segmentation":
            model.ignore_index = config.ignore_index  # evaluate scores without those pixels
        model.backbone.data_config = self.data_config

    # -- checks before any training step -------------------------------------------------
    def _check_data(self) -> None:
        n, world = self.train_source.n, self.dist.world
        if self.train_source.kind != "loader" and n < world:
            raise DataError(
                f"The training data has {n} sample(s) but {world} processes train on it; each "
                "needs at least one. Start fewer processes (torchrun --nproc_per_node) or pass "
                "more data."
            )
        for name, src in (("training", self.train_source), ("validation", self.val_source)):
            if src is None:
                continue
            check_targets(src.targets, self.cfg.task, self.model.num_classes, src.classes,
                          images=src.X, ignore_index=self.cfg.ignore_index)
            src.check_finite()
            if src.X is not None:
                fix_channels(src.X[:1].float(), self.data_config.in_chans)
        if self.cfg.task == "multiclass":
            check_class_count(self.train_source.targets)
        del name

    def _check_early_stopping(self) -> None:
        es = self.cfg.early_stopping
        if es is None:
            return
        names = self.metric_names()
        if es.metric not in names:
            raise ValueError(
                f"early_stopping: metric {es.metric!r} is not recorded by this run; available: "
                f"{sorted(names)}. Pass val_data for validation metrics."
            )

    def metric_names(self) -> set[str]:
        """The numeric metrics each epoch's record holds (those of :meth:`_epoch` and
        :meth:`_validate`), known before the run: early stopping is checked against them."""
        names = {"train_loss", "seconds", "images_per_second"}
        classes = has_accuracy(self.cfg.task)
        if classes:
            names.add("train_accuracy")
        if self.val_source is not None:
            names |= {"val_loss", "val_accuracy"} if classes else {"val_loss"}
        return names

    # -- the run -------------------------------------------------------------------------
    def fit(self) -> History:
        cfg, model = self.cfg, self.model
        start_phase, start_epoch, resume_state = 0, 0, None
        with _determinism(cfg.deterministic), self._checkpoint_dir_lock():
            torch.manual_seed(cfg.seed + self.dist.rank)  # own augmentation draws per rank
            model.to(self.device)
            if cfg.decode_once:  # folders / PIL datasets: decoded once, then batches
                self.train_source, self.val_source = (
                    self._decoded(s) for s in (self.train_source, self.val_source))
            self.formats = TrainFormat(  # channels_last given, or timed on the first steps
                cfg.channels_last, model, deterministic=cfg.deterministic,
                trial=not (cfg.compile or self.dist.is_distributed), autocast=self._autocast)
            if not self.formats.use_trial:
                self._settle_format()
            if cfg.resume:
                resume_state = self._load_resume()
                if resume_state is not None:
                    start_phase, start_epoch = resume_state["next"]
            self.dist.broadcast_module(model)  # every rank starts from rank 0's weights
            undo_sync_bn = (self.dist.convert_sync_batchnorm(model) if cfg.sync_batchnorm
                            else (lambda: None))
            for cb in cfg.callbacks:
                _call(cb, "on_train_start", self)
            try:
                for p_idx in range(start_phase, len(self.phases)):
                    phase = self.phases[p_idx]
                    first = start_epoch if p_idx == start_phase else 0
                    stop = self._run_phase(p_idx, phase, first,
                                           resume_state if p_idx == start_phase else None)
                    if stop:
                        break
            finally:
                self.dist.release()
                undo_sync_bn()
            self._restore_best()
            self.formats.finish(force=True)  # a run too short to time both formats
            self.history.memory_format = self.formats.choices
            for cb in cfg.callbacks:
                _call(cb, "on_train_end", self, self.history)
        return self.history

    def _checkpoint_dir_lock(self):
        """One process at a time trains into a checkpoint_dir; leftovers of killed writes go."""
        folder = self.cfg.checkpoint_dir
        if folder is None or not self.dist.is_main:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(folder_lock(folder, "checkpoint_dir"))
        remove_stale_tmp(folder)
        return stack

    @property
    def channels_last(self) -> bool:
        """Whether the model is now stored (and fed) channels-last."""
        formats = getattr(self, "formats", None)
        return formats.channels_last if formats is not None else False

    def _decoded(self, src: Source | None) -> Source | None:
        if src is None or not decodable(src, self.cfg.transform is not None):
            return src
        return decode_once(src, self.data_config, num_workers=self._workers(src),
                           progress=self.cfg.progress and self.dist.is_main)

    def _settle_format(self) -> None:
        """One format for a whole compiled or distributed run, timed up front on a few
        training images (rank 0's choice for every rank)."""
        src = self.train_source
        batch = next(iter(src.batches(list(range(min(src.n, 16))), batch_size=16,
                                      device=self.device,
                                      prep=self._prep(train=False))), None)
        if batch is None:
            return
        trains = any(p.backbone != "frozen" for p in self.phases)
        cl = self.formats.resolve(batch[0], mode="train" if trains else "infer")
        self.formats.pin(self.dist.broadcast_object(cl) if self.dist.is_distributed else cl)

    def _run_phase(self, p_idx: int, phase: Phase, first: int, resume: dict | None) -> bool:
        cfg, model = self.cfg, self.model
        apply_phase(model, model.backbone, phase, first, cfg.bn)
        self.dist.broadcast_module(model)  # ranks in step after an unfreeze
        groups = param_groups(model, cfg.lr, cfg.weight_decay, phase.backbone_lr_mult,
                              include_backbone=phase.backbone != "frozen",
                              layer_decay=cfg.layer_decay)
        self.optimizer = make_optimizer(cfg.optimizer, groups, cfg.lr, cfg.momentum)
        steps = self._steps_per_epoch()
        self.scheduler = make_scheduler(cfg.schedule, self.optimizer, phase.epochs * steps,
                                        int(round(cfg.warmup_epochs * steps)))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self._amp_dtype == torch.float16)
        if resume is not None and resume.get("optimizer") is not None:
            self.optimizer.load_state_dict(resume["optimizer"])
            self.scheduler.load_state_dict(resume["scheduler"])
            if resume.get("scaler"):
                self.scaler.load_state_dict(resume["scaler"])
            saved_steps = resume.get("steps_per_epoch")
            if saved_steps is not None and saved_steps != steps:  # another number of processes
                _seek_schedule(self.scheduler, first * steps)
        self._prepare_cache(phase)
        prev_loss = None
        for e in range(first, phase.epochs):
            if phase.backbone == "gradual":
                apply_phase(model, model.backbone, phase, e, cfg.bn)
            record = self._epoch(phase, e)
            converged = phase.until_converged and prev_loss is not None and (
                prev_loss - record["train_loss"] < 1e-2 * abs(prev_loss))
            prev_loss = record["train_loss"]
            done = e + 1 == phase.epochs or converged
            stop = self._early_stop(record)
            self._checkpoint(p_idx, e + 1, done)
            for cb in cfg.callbacks:
                _call(cb, "on_epoch_end", self, record)
            if stop:
                self.history.stopped_early = True
                return True
            if converged:
                break
        self.cache = self.val_cache = None
        return False

    # -- one epoch ------------------------------------------------------------------------
    def _epoch(self, phase: Phase, epoch_in_phase: int) -> dict[str, Any]:
        cfg, model = self.cfg, self.model
        for cb in cfg.callbacks:
            _call(cb, "on_epoch_start", self, self.epoch)
        t0 = time.perf_counter()
        _train_mode(model, frozen=phase.backbone == "frozen", bn=cfg.bn)
        if self._watched[0] is not phase:  # what a step of this phase can change
            self._watched = (phase, watched_tensors(model))
        forward = self.dist.wrap(self._head_on_cache(self.cache) if self.cache is not None
                                 else self._compiled())
        total_loss = correct = seen = 0.0
        batches = self._train_batches()
        n_batches = self._batches_per_epoch()
        bar = _progress(batches, n_batches, f"epoch {self.epoch + 1} ({phase.name})",
                        cfg.progress and self.dist.is_main)
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(bar):
            if cfg.task == "multiclass" and self.train_source.targets is None:
                check_label_range(y, model.num_classes)
            elif dense_target(cfg.task) and self.train_source.targets is None:
                check_targets(y, cfg.task, model.num_classes, ignore_index=cfg.ignore_index)
            if self.cache is None:  # images through the model (not cached features)
                x = self.formats.before(x)  # a format trial runs on the first steps
            x, y_train = self.mix(x, y)  # soft targets under mixup/cutmix (training/mixing.py)
            stepping = (i + 1) % cfg.grad_accum_steps == 0 or i + 1 == n_batches
            with self.dist.sync_context(forward, stepping):  # all-reduce on stepping only
                with self._autocast():
                    out = forward(x)
                    loss = self.criterion(out.float(), y_train)
                loss_value = loss.item()  # the one sync of a step: the check and the mean
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"The loss became {loss_value} at epoch {self.epoch + 1}, batch "
                        f"{i + 1}; training stopped. Lower lr, turn on clip_grad_norm, or check "
                        "the data. The last checkpoint (if any) is intact."
                    )
                self.scaler.scale(loss / cfg.grad_accum_steps).backward()
            if stepping:
                self._step()
            if self.cache is None:
                self.formats.after(self.optimizer)
            total_loss += loss_value * len(y)
            correct += batch_correct(cfg.task, out.detach(), y, cfg.ignore_index)
            seen += len(y)
            for cb in cfg.callbacks:
                _call(cb, "on_batch_end", self, i, loss_value)
            if hasattr(bar, "set_postfix") and i % 10 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        self.formats.finish(self.optimizer)  # a trial cut short by a small epoch decides now
        total_loss, correct, seen = self.dist.sum([total_loss, correct, seen])
        self.dist.broadcast_module(model, buffers_only=True)  # rank 0's BatchNorm statistics
        seconds = time.perf_counter() - t0
        record = {
            "epoch": self.epoch, "phase": phase.name,
            "train_loss": total_loss / max(seen, 1),
            "train_accuracy": correct / max(seen, 1) if has_accuracy(cfg.task) else None,
            "lr": [g["lr"] for g in self.optimizer.param_groups],
            "seconds": seconds, "images_per_second": seen / seconds if seconds else None,
            "cached": self.cache is not None, "channels_last": self.channels_last,
        }
        record.update(self._validate())
        first_val = next((r.get("val_loss") for r in self.history), record.get("val_loss"))
        check_diverged(self._watched[1], record, task=cfg.task, num_classes=model.num_classes,
                       first_val_loss=first_val, where=f"epoch {self.epoch + 1}")
        self.history.append(record)
        self.epoch += 1
        return record

    def _step(self) -> None:
        cfg = self.cfg
        if cfg.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        for cb in cfg.callbacks:  # after each optimizer step (EMA, training/averaging.py)
            _call(cb, "on_step_end", self)

    def _train_batches(self):
        cfg, src = self.cfg, self.train_source
        if self.cache is not None:
            return self.cache.batches(self._cache_positions(), batch_size=cfg.batch_size,
                                      device=self.device, view=self.epoch,
                                      drop_last=self._drop_single)
        if src.kind == "loader":
            self._loader_epoch(src.loader)
        order = src.indices(self.epoch, shuffle=cfg.shuffle, seed=cfg.seed,
                            rank=self.dist.rank, world=self.dist.world)
        prep = self._prep(train=True, augment=cfg.augment)
        return src.batches(order, batch_size=cfg.batch_size, device=self.device, prep=prep,
                           num_workers=self._workers(src), persistent=True,
                           drop_last=self._drop_single)

    @property
    def _drop_single(self) -> bool:
        """Drop a last batch of one sample when BatchNorm trains on it (it cannot: batch
        statistics of one value per channel); any other last batch is kept."""
        src, bs = self.train_source, self.cfg.batch_size
        if src.kind == "loader":
            return False
        per_rank = math.ceil(src.n / self.dist.world)
        return per_rank > 1 and per_rank % bs == 1 and any(
            is_batchnorm(m) for m in self.model.modules())

    def _cache_positions(self) -> list[int]:
        if self._cache_whole:  # position == sample index on every rank: the uncached order
            return self.train_source.indices(self.epoch, shuffle=self.cfg.shuffle,
                                             seed=self.cfg.seed, rank=self.dist.rank,
                                             world=self.dist.world)
        # A dense cache stays sharded: this rank cached samples rank::world and trains on
        # them in the order the one-process shuffle gives, padded to an equal step count.
        order = self.train_source.indices(self.epoch, shuffle=self.cfg.shuffle,
                                          seed=self.cfg.seed)
        return shard_positions(order, self.dist.rank, self.dist.world)

    def _loader_epoch(self, loader) -> None:
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(self.epoch)
        elif self.dist.is_distributed and self.epoch == 0 and self.dist.is_main:
            warnings.warn(
                "finetune: train_data is a DataLoader without a DistributedSampler, so every "
                "process iterates all of it. Pass a Dataset or (X, y) instead (finetune shards "
                "it), or build the loader with sampler=DistributedSampler(dataset).",
                stacklevel=4)

    def _batches_per_epoch(self) -> int:
        """Training batches (micro-batches) this rank runs in one epoch."""
        src, cfg = self.train_source, self.cfg
        if src.kind == "loader":
            n_batches = len(src.loader)  # type: ignore[arg-type]
        else:
            per_rank = math.ceil(src.n / self.dist.world)
            n_batches = (per_rank // cfg.batch_size if self._drop_single
                         else math.ceil(per_rank / cfg.batch_size))
        return n_batches

    def _steps_per_epoch(self) -> int:
        """Optimiser steps per epoch: a last, partial accumulation still steps."""
        return math.ceil(self._batches_per_epoch() / self.cfg.grad_accum_steps)

    def _workers(self, src: Source) -> int:
        return default_workers(src) if self.cfg.num_workers is None else self.cfg.num_workers

    def _compiled(self):
        if not self.cfg.compile:
            return self.model
        if not hasattr(self, "_compiled_model"):
            self._compiled_model = torch.compile(self.model)
        return self._compiled_model

    # -- validation -----------------------------------------------------------------------
    def _validate(self) -> dict[str, Any]:
        if self.val_source is None:
            return {}
        model, cfg = self.model, self.cfg
        was = model.training
        model.eval()
        total = correct = seen = 0.0
        with torch.inference_mode(), self._autocast():
            for x, y in self._val_batches():
                if self.channels_last and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                out = (self._head_on_cache(self.val_cache)(x) if self.val_cache is not None
                       else model(x)).float()
                total += self.criterion(out, y).item() * len(y)
                correct += batch_correct(cfg.task, out, y, cfg.ignore_index)
                seen += len(y)
        model.train(was)
        total, correct, seen = self.dist.sum([total, correct, seen])
        out = {"val_loss": total / max(seen, 1)}
        if has_accuracy(cfg.task):
            out["val_accuracy"] = correct / max(seen, 1)
        return out

    def _val_batches(self):
        src, cfg = self.val_source, self.cfg
        order = src.indices(0, shuffle=False, seed=0, rank=self.dist.rank,
                            world=self.dist.world, pad=False)
        if self.val_cache is not None:
            return self.val_cache.batches(range(len(order)), batch_size=cfg.batch_size * 2,
                                          device=self.device)
        return src.batches(order, batch_size=cfg.batch_size * 2, device=self.device,
                           prep=self._prep(train=False),
                           num_workers=self._workers(src), persistent=True)

    def _prep(self, *, train: bool, augment: bool = False):
        """This task's batch preprocessing (images, or image/target pairs for dense tasks)."""
        return batch_prep(self.data_config, self.target, train=train, augment=augment)

    def _head_on_cache(self, cache):
        """What trains or validates on ``cache``'s batches: the head (at the cached input
        size, for a dense head)."""
        return cache.head(self.model) if hasattr(cache, "head") else self.model.head

    # -- feature cache --------------------------------------------------------------------
    def _prepare_cache(self, phase: Phase) -> None:
        cfg = self.cfg
        self.cache = self.val_cache = None
        if not cfg.cache_features or phase.backbone != "frozen":
            return
        views = default_cache_views(cfg.cache_views, augment=cfg.augment,
                                    custom_transform=cfg.transform is not None,
                                    epochs=phase.epochs)
        reason = mixing_skip_reason(cfg) or cache_skip_reason(
            self.model, self.train_source.kind, cfg.augment, views,
            custom_transform=cfg.transform is not None)
        if reason is not None:
            if self.dist.is_main and cfg.progress:
                notice(f"feature cache off: {reason}.")
            return
        if cfg.cache_views is None and cfg.augment and self.dist.is_main and cfg.progress:
            notice(f"feature cache on with augmentation: {views} augmented "
                  f"view(s) per image precomputed (cache_views={views}; epoch e trains on view "
                  f"e % {views}), so the {phase.epochs}-epoch {phase.name} costs {views} "
                  "backbone pass(es) over the data.")
        dtype = torch.float16 if cfg.cache_dtype == "float16" else torch.float32
        budget = (DEFAULT_MEMORY_BUDGET if cfg.cache_memory_budget is None
                  else cfg.cache_memory_budget)  # train and validation caches together

        def prep_for_view(v: int) -> BatchPrep:
            return self._prep(train=cfg.augment, augment=cfg.augment)

        src = self.train_source
        order = src.indices(0, shuffle=False, seed=0, rank=self.dist.rank,
                            world=self.dist.world, pad=False)
        with _isolated_rng(cfg.seed + self.dist.rank):
            first = next(iter(src.batches(order[:16], batch_size=16, device=self.device,
                                          prep=self._prep(train=False))))
            self.formats.resolve(first[0], mode="infer")  # forward only: timed if "auto"
            self.cache = build_cache(
                self.model, src, prep_for_view=prep_for_view, views=views,
                batch_size=max(cfg.batch_size, 64), device=self.device, dtype=dtype,
                memory_budget=budget, num_workers=self._workers(src),
                order=order, autocast=self._autocast, channels_last=self.channels_last,
                progress=cfg.progress and self.dist.is_main, desc="feature cache")
        self.cache_forward_samples += len(order) * views
        # Distributed: join the ranks' shards, so that cached epochs see the same global
        # batches as uncached ones (the sampler's order) and as one process.
        self._cache_whole = not self.dist.is_distributed or isinstance(self.cache, FeatureCache)
        if self.dist.is_distributed and isinstance(self.cache, FeatureCache):
            self.cache = gather_cache(self.cache, self.dist.unshard)
        elif self.dist.is_distributed:  # a dense cache is joined when the whole fits the budget
            joined = gather_dense_cache(self.cache, self.dist, budget)
            self._cache_whole = joined is not None
            self.cache = joined or self.cache
        if not self.cache.on_disk:
            budget = max(0, budget - self.cache.nbytes)
        if self.val_source is not None:
            vsrc = self.val_source
            vorder = vsrc.indices(0, shuffle=False, seed=0, rank=self.dist.rank,
                                  world=self.dist.world, pad=False)
            self.val_cache = build_cache(
                self.model, vsrc, prep_for_view=lambda v: self._prep(train=False),
                views=1, batch_size=max(cfg.batch_size, 64), device=self.device, dtype=dtype,
                memory_budget=budget, num_workers=self._workers(vsrc), order=vorder,
                autocast=self._autocast, channels_last=self.channels_last,
                progress=cfg.progress and self.dist.is_main, desc="feature cache (val)")

    # -- amp ------------------------------------------------------------------------------
    @property
    def _amp_dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.cfg.amp, self.device)  # the rule every verb follows

    def _autocast(self):
        return autocast(self.cfg.amp, self.device)

    # -- early stopping -------------------------------------------------------------------
    def _early_stop(self, record: dict[str, Any]) -> bool:
        es = self.cfg.early_stopping
        if es is None:
            return False
        value = record.get(es.metric)
        if value is None:
            raise ValueError(
                f"early_stopping: metric {es.metric!r} is not in the history; available: "
                f"{sorted(k for k, v in record.items() if isinstance(v, float))}. Pass val_data "
                "for validation metrics."
            )
        best = self._early["best"]
        better = best is None or (value < best - es.min_delta if es.resolved_mode == "min"
                                  else value > best + es.min_delta)
        if better:
            self._early.update(best=value, epoch=record["epoch"], bad=0,
                               state=copy.deepcopy(self.model.state_dict()))
        else:
            self._early["bad"] += 1
        return self._early["bad"] >= es.patience

    def _restore_best(self) -> None:
        if self.cfg.early_stopping is not None and self._early["state"] is not None:
            self.model.load_state_dict(self._early["state"])
            self.history.best_epoch = self._early["epoch"]

    # -- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self, p_idx: int, phase_epoch: int, phase_done: bool) -> None:
        if self.cfg.checkpoint_dir is None:
            return
        rngs = self.dist.gather_objects(rng_state())  # every rank's stream, for exact resume
        if not self.dist.is_main:
            return
        model = self.model
        # never replace the last good checkpoint with a non-finite model (called after an
        # epoch: the phase's watched tensors are taken)
        bad = first_non_finite(self._watched[1])
        if bad is not None:
            raise TrainingError(f"The model holds NaN or infinite values ({bad!r}); the "
                                "checkpoint was not written, the last one is intact.")
        state = {
            "format": "transferkit-checkpoint", "version": 1,
            "strategy": self.cfg.strategy,
            "options": run_options(self.cfg, self.train_source.n, model),
            "model": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.epoch, "phase_index": p_idx, "phase_epoch": phase_epoch,
            "phase_done": phase_done,
            "rng": rngs[0], "rng_ranks": rngs, "world": self.dist.world,
            "steps_per_epoch": self._steps_per_epoch(),
            "frozen": freeze_state(model),  # the format save uses too (freeze.py)
            "history": self.history.to_list(),
            "early": {k: v for k, v in self._early.items()},
        }
        atomic_save(state, Path(self.cfg.checkpoint_dir) / LAST)

    def _load_resume(self) -> dict[str, Any] | None:
        path = Path(self.cfg.checkpoint_dir) / LAST  # type: ignore[arg-type]
        # Rank 0 reads the file (it alone wrote it) and sends it to the others.
        ck = load_checkpoint(path) if self.dist.is_main and path.exists() else None
        ck = self.dist.broadcast_object(ck)
        if ck is None:
            return None
        if ck["strategy"] != self.cfg.strategy:
            raise ValueError(
                f"finetune: the checkpoint in {str(path)!r} comes from strategy "
                f"{ck['strategy']!r}, not {self.cfg.strategy!r}; resume with the same options."
            )
        model = self.model
        check_resume(ck.get("options"), run_options(self.cfg, self.train_source.n, model), path)
        check_architecture(ck["model"], model, path)
        model.load_state_dict(ck["model"])
        frozen = ck.get("frozen") or {  # checkpoints written before the shared format
            "parameters": [n for n, g in ck["requires_grad"].items() if not g],
            "batchnorm_eval": list(ck["frozen_bn"])}
        load_freeze_state(model, frozen, source=repr(str(path)))
        self.history = History(ck["history"])
        self.epoch = ck["epoch"]
        self._early = dict(ck["early"])
        rngs = ck.get("rng_ranks") or [ck["rng"]]
        if len(rngs) == self.dist.world:
            set_rng_state(rngs[self.dist.rank])
        else:  # another number of processes: rank 0 continues, the others draw afresh
            set_rng_state(ck["rng"])
            if self.dist.rank:
                torch.manual_seed(self.cfg.seed + self.dist.rank + 7919 * self.epoch)
        if ck["phase_done"]:
            return {"next": (ck["phase_index"] + 1, 0)}
        return {"next": (ck["phase_index"], ck["phase_epoch"]), "optimizer": ck["optimizer"],
                "scheduler": ck["scheduler"], "scaler": ck["scaler"],
                "steps_per_epoch": ck.get("steps_per_epoch")}


_call = call_hook  # the Callback protocol's dispatch (training/callbacks.py)


def _train_mode(model, *, frozen: bool, bn: str) -> None:
    """``model.train()``; a frozen backbone in eval mode (it computes fixed features: no
    dropout), but with ``bn="train"`` its BatchNorm layers train, as in torch. A frozen backbone
    already wholly in eval mode is not switched again (walking its modules twice per epoch
    was a visible part of a cached probe's epoch)."""
    if not frozen or bn == "train":
        model.train()
        if frozen:
            for m in model.backbone.modules():
                m.train(is_batchnorm(m))
        return
    for child in model.children():
        if child is not model.backbone:
            child.train()
    model.training = True
    if any(m.training for m in model.backbone.modules()):
        model.backbone.eval()


def _seek_schedule(scheduler, step: int) -> None:
    """Move a per-step schedule to ``step`` (a resume with another number of steps per epoch)."""
    scheduler.last_epoch = step - 1
    scheduler.step()


def _progress(iterable, total: int, desc: str, enabled: bool):
    return progress_bar(iterable, total=total, desc=desc, unit="batch", enabled=enabled)


@contextlib.contextmanager
def _determinism(on: bool):
    if not on:
        yield
        return
    prev = torch.are_deterministic_algorithms_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)
        torch.backends.cudnn.benchmark = prev_bench


@contextlib.contextmanager
def _isolated_rng(seed: int):
    """Run with a fixed seed and leave the global random state as it was (resume-safe)."""
    state = torch.get_rng_state()
    torch.manual_seed(seed + 1_000_003)
    try:
        yield
    finally:
        torch.set_rng_state(state)


