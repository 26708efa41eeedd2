"""Cached backbone features for a frozen backbone: run it once per sample, train the head.

When the backbone is frozen (BatchNorm in eval mode) and the training data is not augmented,
its output for a sample is the same in every epoch, so ``finetune`` computes it once (eval mode,
``torch.inference_mode``, batched) and trains the head on the cache. With augmentation, ``K``
augmented views per sample can be precomputed (``cache_views=K``); epoch ``e`` uses view
``e % K``. The cache keeps what the head receives: pooled vectors for heads that average-pool,
the unpooled map for heads that need it (``vgg_classifier``, custom heads).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .backbones._base import is_batchnorm
from .heads import HEADS

__all__ = ["FeatureCache", "build_cache", "cache_skip_reason", "head_takes_pooled"]

DEFAULT_MEMORY_BUDGET = 4 * 2**30  # bytes kept in RAM before the cache moves to a disk memmap


def head_takes_pooled(model) -> bool:
    """True when the head only needs average-pooled features (so the cache can be small)."""
    name = getattr(model, "head_name", None)
    if name not in HEADS:
        return False
    spec = HEADS.get(name)
    return not spec.needs_map and model.head_options.get("pool", "avg") == "avg"


def cache_skip_reason(model, source_kind: str, augment: bool, cache_views: int) -> str | None:
    """Why caching does not apply (``None`` when it does)."""
    backbone = model.backbone
    if any(p.requires_grad for p in backbone.parameters()):
        return "the backbone has trainable parameters"
    bns = [n for n, m in backbone.named_modules() if is_batchnorm(m)]
    if any(n not in backbone._frozen_bn for n in bns):
        return "frozen BatchNorm layers are in train mode (bn='train')"
    if source_kind == "loader":
        return "the data is a DataLoader, whose batches may be augmented or shuffled its own way"
    if augment and cache_views < 1:
        return "training data is augmented (pass cache_views=K to cache K augmented views)"
    return None


@dataclass
class FeatureCache:
    """Backbone outputs ``(V, N, ...)`` for ``V`` views of ``N`` samples, and their targets."""

    features: Tensor
    targets: Tensor
    path: str | None = None

    @property
    def views(self) -> int:
        return self.features.shape[0]

    def batches(self, order: Sequence[int], *, batch_size: int, device: torch.device,
                view: int = 0, drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        idx = torch.as_tensor(list(order), dtype=torch.long)
        stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
        feats = self.features[view % self.views]
        for i in range(0, stop, batch_size):
            b = idx[i:i + batch_size]
            yield (feats[b].to(device, torch.float32, non_blocking=True),
                   self.targets[b].to(device, non_blocking=True))


def _allocate(shape: tuple[int, ...], dtype: torch.dtype, budget: int) -> tuple[Tensor, str | None]:
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if nbytes <= budget:
        return torch.empty(shape, dtype=dtype), None
    np_dtype = np.float16 if dtype == torch.float16 else np.float32
    f = tempfile.NamedTemporaryFile(prefix="transferkit-cache-", suffix=".npy", delete=False)
    mm = np.lib.format.open_memmap(f.name, mode="w+", dtype=np_dtype, shape=shape)
    return torch.from_numpy(mm), f.name


def build_cache(model, source, *, prep_for_view, views: int, batch_size: int,
                device: torch.device, dtype: torch.dtype = torch.float32,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, num_workers: int = 0,
                order: Sequence[int] | None = None, autocast=None) -> FeatureCache:
    """Run the frozen backbone once per sample (and per view) and keep the head's inputs.

    Args:
        prep_for_view: ``view -> BatchPrep`` (augmenting for views when asked).
        order: the samples to cache (this rank's shard); all of them when ``None``.
    """
    backbone = model.backbone
    pooled = head_takes_pooled(model)
    order = list(range(source.n)) if order is None else list(order)
    was_training = backbone.training
    backbone.eval()
    store: Tensor | None = None
    path = None
    targets = []
    try:
        with torch.inference_mode():
            for v in range(views):
                pos = 0
                for x, y in source.batches(order, batch_size=batch_size, device=device,
                                           prep=prep_for_view(v), num_workers=num_workers):
                    with autocast() if autocast else _null():
                        f = backbone.forward_features(x)
                    if pooled and f.ndim == 4:
                        f = f.mean(dim=(2, 3))  # what the average-pooling head computes
                    if store is None:
                        store, path = _allocate((views, len(order), *f.shape[1:]), dtype,
                                                memory_budget)
                    store[v, pos:pos + len(f)] = f.to("cpu", dtype)
                    pos += len(f)
                    if v == 0:
                        targets.append(y.cpu())
    finally:
        backbone.train(was_training)
    return FeatureCache(store, torch.cat(targets), path)  # type: ignore[arg-type]


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False
