"""Cached backbone features for a frozen backbone: run it once per sample, train the head.

When the backbone is frozen (BatchNorm in eval mode) and the training data is not augmented,
its output for a sample is the same in every epoch, so ``finetune`` computes it once (eval mode,
``torch.inference_mode``, batched) and trains the head on the cache. With augmentation, ``K``
augmented views per sample can be precomputed (``cache_views=K``); epoch ``e`` uses view
``e % K``. The cache keeps what the head receives: pooled vectors for heads that average-pool,
the unpooled map for heads that need it (``vgg_classifier``, custom heads).

A cache larger than the memory budget lives in a disk memmap (a temporary file, removed when
the cache is freed). A cache lives only for its run: :func:`transferkit.evaluate` always runs
the model (the run's last validation figures are in its ``History``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._io import allocate_store
from .._log import progress_bar
from ..backbones._base import is_batchnorm
from ..heads import HEADS

__all__ = [
    "FeatureCache", "build_cache", "cache_skip_reason", "default_cache_views", "gather_cache",
    "head_takes_pooled",
]

DEFAULT_MEMORY_BUDGET = 4 * 2**30  # bytes kept in RAM before the cache moves to a disk memmap


def head_takes_pooled(model) -> bool:
    """True when the head only needs average-pooled features (so the cache can be small)."""
    name = getattr(model, "head_name", None)
    if name not in HEADS:
        return False
    spec = HEADS.get(name)
    return spec.pooled and model.head_options.get("pool", "avg") == "avg"


#: Augmented views cached by default: a probe then runs the backbone at most twice over the data.
AUTO_AUGMENTED_VIEWS = 2


def default_cache_views(cache_views: int | None, *, augment: bool, custom_transform: bool,
                        epochs: int) -> int:
    """Views to cache for a frozen phase of ``epochs`` epochs.

    ``cache_views`` given: that. ``None`` (the default): 1 without augmentation; with the
    built-in augmentation ``min(AUTO_AUGMENTED_VIEWS, epochs)`` views, so that the probe costs
    at most two backbone passes over the data (epoch ``e`` trains on view ``e % K``); with a
    custom ``transform`` 0 (it may be random or not: the caller says, with ``cache_views``).
    """
    if cache_views is not None:
        return cache_views
    if custom_transform:
        return 0
    return min(AUTO_AUGMENTED_VIEWS, epochs) if augment else 1


def cache_skip_reason(model, source_kind: str, augment: bool, cache_views: int, *,
                      custom_transform: bool = False) -> str | None:
    """Why caching does not apply (``None`` when it does).

    Args:
        source_kind: the training :class:`~transferkit.data.Source`'s kind.
        augment: whether the training batches are augmented.
        cache_views: augmented views per sample the user asked to cache (0: none).
        custom_transform: the user passed ``transform=``, which may be random.
    """
    backbone = model.backbone
    if any(p.requires_grad for p in backbone.parameters()):
        return "the backbone has trainable parameters"
    bns = [n for n, m in backbone.named_modules() if is_batchnorm(m)]
    if any(n not in backbone._frozen_bn for n in bns):
        return "frozen BatchNorm layers are in train mode (bn='train')"
    if source_kind == "loader":
        return "the data is a DataLoader, whose batches may be augmented or shuffled its own way"
    if getattr(model, "residual", False):
        return ("an image-to-image model adds its input to the head's output, and the cache "
                "holds the encoder's maps only")
    if getattr(model, "dense", False) and (augment or custom_transform):
        return ("the image/mask pairs are augmented (a cached view of an image would need its "
                "own view of the mask); pass augment=False to cache the encoder's maps")
    if custom_transform and cache_views < 1:
        return ("a custom transform may be random (pass cache_views=K to cache K views of it, "
                "cache_views=1 when it is deterministic)")
    if augment and cache_views < 1:
        return "training data is augmented (pass cache_views=K to cache K augmented views)"
    return None


@dataclass
class FeatureCache:
    """Backbone outputs ``(V, N, ...)`` for ``V`` views of ``N`` samples, and their targets.

    Attributes:
        features: ``(V, N, C)`` pooled vectors or ``(V, N, C, H, W)`` maps, float32 or float16,
            in memory or in a disk memmap.
        targets: ``(N,)`` class indices (or ``(N, K)`` targets), in memory.
        path: the memmap's file when the cache is on disk (removed when the cache is freed;
            on POSIX it is unlinked at once and lives on only as the mapping).
    """

    features: Tensor
    targets: Tensor
    path: str | None = None
    _keep: Any = field(default=None, repr=False)  # the numpy memmap behind ``features``

    @property
    def views(self) -> int:
        return self.features.shape[0]

    @property
    def n(self) -> int:
        return self.features.shape[1]

    @property
    def on_disk(self) -> bool:
        return self.path is not None

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()

    def batches(self, order: Sequence[int], *, batch_size: int, device: torch.device,
                view: int = 0, drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """``(features, targets)`` batches in ``order`` (positions in the cache), as float32."""
        feats = self.features[view % self.views]
        # In order and without autograd (validation, evaluate): slices, no gather copy. A
        # training step gets copies: autograd cannot save the cache's inference tensors.
        if isinstance(order, range) and order.step == 1 and torch.is_inference_mode_enabled():
            stop = len(order) - (len(order) % batch_size if drop_last else 0)
            for i in range(order.start, order.start + stop, batch_size):
                j = min(i + batch_size, order.stop)
                yield (feats[i:j].to(device, torch.float32, non_blocking=True),
                       self.targets[i:j].to(device, non_blocking=True))
            return
        idx = torch.as_tensor(list(order), dtype=torch.long)
        stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            b = idx[i:i + batch_size]
            yield (feats[b].to(device, torch.float32, non_blocking=True),
                   self.targets[b].to(device, non_blocking=True))


def build_cache(model, source, *, prep_for_view, views: int, batch_size: int,
                device: torch.device, dtype: torch.dtype = torch.float32,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, num_workers: int = 0,
                order: Sequence[int] | None = None, autocast=None,
                channels_last: bool = False, progress: bool = False,
                desc: str = "features") -> FeatureCache:
    """Run the frozen backbone once per sample (and per view) and keep the head's inputs.

    Args:
        prep_for_view: ``view -> BatchPrep`` (augmenting for views when asked).
        views: augmented views per sample (1 without augmentation).
        dtype: ``torch.float32`` or ``torch.float16`` storage.
        memory_budget: bytes; a larger cache goes to a disk memmap.
        order: the samples to cache (this rank's shard); all of them when ``None``.
        autocast: ``() -> context manager`` of the training's mixed precision.
        channels_last: feed the backbone channels-last inputs, as training would.
        progress: a progress bar (``_log.progress_bar``) over the images (and views) passed
            through the backbone.
        desc: the bar's label.

    Returns:
        The :class:`FeatureCache`; position ``p`` holds sample ``order[p]``.
    """
    backbone = model.backbone
    pooled = head_takes_pooled(model)
    order = list(range(source.n)) if order is None else list(order)
    was_training = backbone.training
    backbone.eval()
    store: Tensor | None = None
    path = keep = None
    targets = []
    bar = progress_bar(total=len(order) * views, desc=desc, enabled=progress)
    try:
        with torch.inference_mode():
            if getattr(model, "dense", False):  # the stage maps the dense head reads
                from .dense_cache import build_dense_cache

                return build_dense_cache(  # type: ignore[return-value]
                    model, source, prep_for_view=prep_for_view, views=views,
                    batch_size=batch_size, device=device, dtype=dtype,
                    memory_budget=memory_budget, num_workers=num_workers, order=order,
                    autocast=autocast, channels_last=channels_last, bar=bar)
            for v in range(views):
                pos = 0
                for x, y in source.batches(order, batch_size=batch_size, device=device,
                                           prep=prep_for_view(v), num_workers=num_workers):
                    if channels_last and x.ndim == 4:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with autocast() if autocast else contextlib.nullcontext():
                        f = backbone.forward_features(x)
                        if pooled and f.ndim == 4:
                            f = f.mean(dim=(2, 3))  # what the average-pooling head computes
                    if store is None:
                        store, path, keep = allocate_store((views, len(order), *f.shape[1:]),
                                                           dtype, memory_budget)
                    store[v, pos:pos + len(f)] = f.to("cpu", dtype)
                    pos += len(f)
                    bar.update(len(f))
                    if v == 0:
                        targets.append(y.cpu())
    finally:
        bar.close()
        backbone.train(was_training)
    return FeatureCache(store, torch.cat(targets), path, keep)  # type: ignore[arg-type]


def gather_cache(cache: FeatureCache, unshard: Callable[[Tensor], Tensor]) -> FeatureCache:
    """Every rank's shard of a distributed cache joined into the whole cache, in memory.

    Rank ``r`` cached the samples ``r::world``; ``unshard`` (``DistContext.unshard``) puts
    them back in sample order, so that position ``i`` holds sample ``i`` on every rank and
    a cached epoch can run the same sampler order as an uncached one. Features are small
    (one vector or map per sample and view), so every rank holding all of them is cheap.
    """
    features = unshard(cache.features.movedim(1, 0).contiguous()).movedim(0, 1)  # (V, N, ...)
    return FeatureCache(features.contiguous(), unshard(cache.targets))
