"""The feature cache of a frozen encoder under a dense head: the stage maps the head reads.

A dense head reads some of the backbone's stage maps (its ``in_stages``; all of them when it
does not say). With the encoder frozen and the training pairs not augmented, those maps are the
same every epoch, so they are computed once (eval mode, ``torch.inference_mode``, batched) and
the head trains on them. One store per kept stage, ``(V, N, C_s, H_s, W_s)``, in memory within
the budget, else in temporary disk memmaps (:func:`transferkit._io.allocate_store`, the same
rule as the classification cache). The cache also keeps the targets
and the input size ``(H, W)`` the head upsamples to.

Augmented pairs are not cached: a view of the image needs its own view of the mask, so
:func:`~transferkit.training.feature_cache.cache_skip_reason` turns caching off with its notice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._io import allocate_store

__all__ = ["DenseFeatureCache", "build_dense_cache", "gather_dense_cache", "HeadAtSize",
           "kept_stages"]


def kept_stages(model) -> tuple[int, ...]:
    """Indices of the stage maps ``model``'s dense head reads."""
    n = len(model.backbone.feature_info)
    stages = getattr(model.head, "in_stages", None)
    return tuple(range(n)) if stages is None else tuple(int(i) for i in stages)


class HeadAtSize(nn.Module):
    """``head(features)`` for a dense head that also needs the input size (cached training)."""

    def __init__(self, head: nn.Module, size: Sequence[int]) -> None:
        super().__init__()
        self.head, self.size = head, (int(size[0]), int(size[1]))

    def forward(self, features: Sequence[Tensor | None]) -> Tensor:
        return self.head(features, self.size)


@dataclass
class DenseFeatureCache:
    """Stage maps of ``N`` samples (``V`` views) and their targets.

    Attributes:
        stores: ``{stage index: (V, N, C, H, W)}`` float32 or float16 tensors (memory or memmap).
        num_stages: length of the backbone's ``feature_info`` (the list a head receives).
        targets: ``(N, ...)`` masks or target images, in memory.
        size: the input ``(H, W)`` the maps were computed from.
        paths: the memmap files of stores on disk.
    """

    stores: dict[int, Tensor]
    num_stages: int
    targets: Tensor | list[Tensor]
    size: tuple[int, int]
    paths: list[str] = field(default_factory=list)
    _keep: list[Any] = field(default_factory=list, repr=False)

    @property
    def views(self) -> int:
        return next(iter(self.stores.values())).shape[0]

    @property
    def n(self) -> int:
        return next(iter(self.stores.values())).shape[1]

    @property
    def on_disk(self) -> bool:
        return bool(self.paths)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.stores.values())

    def head(self, model) -> nn.Module:
        """The module to train on this cache's batches: the head at the cached input size."""
        return HeadAtSize(model.head, self.size)

    def batches(self, order: Sequence[int], *, batch_size: int, device: torch.device,
                view: int = 0, drop_last: bool = False
                ) -> Iterator[tuple[list[Tensor | None], Tensor]]:
        """``([map per stage, None where unread], targets)`` batches in ``order``, float32."""
        idx = torch.as_tensor(list(order), dtype=torch.long)
        stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            b = idx[i:i + batch_size]
            feats: list[Tensor | None] = [None] * self.num_stages
            for s, store in self.stores.items():
                feats[s] = store[view % self.views][b].to(device, torch.float32,
                                                           non_blocking=True)
            if isinstance(self.targets, list):
                yield feats, [self.targets[j].to(device) for j in b.tolist()]
            else:
                yield feats, self.targets[b].to(device, non_blocking=True)


def build_dense_cache(model, source, *, prep_for_view, views: int, batch_size: int,
                      device: torch.device, dtype: torch.dtype, memory_budget: int,
                      num_workers: int, order: Sequence[int], autocast, channels_last: bool,
                      bar) -> DenseFeatureCache:
    """Run the frozen encoder once per sample and keep the maps the dense head reads (called
    by :func:`~transferkit.training.feature_cache.build_cache`, which owns the progress bar
    and the mode switches)."""
    backbone = model.backbone
    stages = kept_stages(model)
    num_stages = len(backbone.feature_info)
    stores: dict[int, Tensor] = {}
    paths: list[str] = []
    keep: list[Any] = []
    targets: list[Tensor] = []
    size: tuple[int, int] | None = None
    order = list(order)
    for v in range(views):
        pos = 0
        for x, y in source.batches(order, batch_size=batch_size, device=device,
                                   prep=prep_for_view(v), num_workers=num_workers):
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            size = size or (int(x.shape[-2]), int(x.shape[-1]))
            with autocast() if autocast else torch.autocast("cpu", enabled=False):
                maps = backbone.forward_stages(x)
            if not stores:
                budget = memory_budget
                for s in stages:
                    store, path, mm = allocate_store((views, len(order), *maps[s].shape[1:]),
                                                     dtype, budget)
                    budget = max(0, budget - store.numel() * store.element_size()) if (
                        path is None) else budget
                    stores[s] = store
                    if path is not None:
                        paths.append(path)
                        keep.append(mm)
            for s in stages:
                stores[s][v, pos:pos + len(x)] = maps[s].to("cpu", dtype)
            pos += len(x)
            bar.update(len(x))
            if v == 0:
                targets.append([t.cpu() for t in y] if isinstance(y, list) else y.cpu())
    if any(isinstance(t, list) for t in targets):  # masks of different sizes: one per sample
        kept: Any = [m for t in targets for m in (t if isinstance(t, list) else list(t))]
    else:
        kept = torch.cat(targets)
    return DenseFeatureCache(stores, num_stages, kept, size or (0, 0), paths, keep)


def gather_dense_cache(cache: DenseFeatureCache, dist, budget: int) -> DenseFeatureCache | None:
    """Every rank's shard of a distributed dense cache joined into the whole cache, in memory,
    when the whole fits ``budget`` bytes per process (else ``None``: it stays sharded).

    Rank ``r`` cached the samples ``r::world``; joined, position ``i`` holds sample ``i`` on
    every rank, so cached epochs run the sampler's global order: the same global batches as
    uncached epochs and as one process with the doubled batch. A sharded cache trains each
    rank on its own samples, in the one-process order (other global batches once shuffled).
    Collective: every rank calls it and all take the same decision.

    Args:
        cache: this rank's shard.
        dist: the run's ``DistContext`` (``sum``, ``unshard``).
        budget: bytes one process may hold in memory for the cache.
    """
    total, on_disk, lists = dist.sum([float(cache.nbytes), float(cache.on_disk),
                                      float(isinstance(cache.targets, list))])
    if on_disk or lists or total > budget:
        return None
    stores = {s: dist.unshard(t.movedim(1, 0).contiguous()).movedim(0, 1).contiguous()
              for s, t in cache.stores.items()}  # (V, N, C, H, W)
    return DenseFeatureCache(stores, cache.num_stages, dist.unshard(cache.targets), cache.size)
