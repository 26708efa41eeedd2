"""Process-group context for ``finetune`` and ``evaluate``: one process, or a ``torchrun`` launch.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and gives each
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. When
``WORLD_SIZE`` is above 1, :meth:`DistContext.from_env` initialises the default process group
once (``gloo`` on the CPU, ``nccl`` on CUDA; ``TRANSFERKIT_DIST_BACKEND`` or ``backend=``
overrides it) and reuses it on every later call. Without ``WORLD_SIZE`` (or with 1) nothing is
initialised and every method is the identity: a single process is rank 0 of 1.

See ``docs/distributed.md`` for what is synchronised and how to launch.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BACKEND_ENV", "DistContext", "interleave", "resolve_backend", "shard_positions"]

BACKEND_ENV = "TRANSFERKIT_DIST_BACKEND"
_BACKENDS = ("gloo", "nccl", "mpi", "ucc", "xccl")


@dataclass
class DistContext:
    """Rank and world size of this process, and the collectives ``finetune`` needs.

    Attributes:
        rank: this process's rank (0 is the main process: checkpoints, logs, progress bars).
        world: number of processes.
        local_rank: rank on this machine (the CUDA device index under ``torchrun``).
        backend: the process group's backend, ``None`` for a single process.
        device: where this process computes (``cuda:LOCAL_RANK`` for a distributed CUDA run).

    Example:
        >>> ctx = DistContext.from_env(torch.device("cpu"))  # no torchrun: a single process
        >>> ctx.rank, ctx.world, ctx.sum([1.0, 2.0])
        (0, 1, [1.0, 2.0])
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _ddp: nn.Module | None = field(default=None, repr=False)
    _ddp_key: tuple | None = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world > 1

    # -- set-up ---------------------------------------------------------------------------
    @classmethod
    def from_env(cls, device: torch.device | None = None,
                 backend: str | None = None) -> DistContext:
        """The context of this process, initialising the process group on first use.

        Args:
            device: where the caller computes; a CUDA device without an index becomes
                ``cuda:LOCAL_RANK`` in a distributed run.
            backend: ``"gloo"``, ``"nccl"``, ... ; ``None`` reads ``TRANSFERKIT_DIST_BACKEND``,
                then picks ``nccl`` for CUDA and ``gloo`` otherwise. Ignored when a process
                group already exists (it is reused as it is).

        Raises:
            ValueError: an unknown or unavailable backend, or ``nccl`` for a CPU device.
            RuntimeError: more processes on this machine than CUDA devices.
        """
        device = torch.device("cpu") if device is None else torch.device(device)
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
            if world == 1:
                return cls(device=device)
            local = int(os.environ.get("LOCAL_RANK", rank))
            return cls(rank, world, local, str(dist.get_backend()),
                       _local_device(device, local))
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls(device=device)
        if not dist.is_available():
            raise RuntimeError(
                f"WORLD_SIZE is {world} but this torch build has no torch.distributed; run a "
                "single process or install a torch build with distributed support."
            )
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        device = _local_device(device, local)
        name = resolve_backend(backend, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=name)
        atexit.register(_destroy)
        return cls(rank, world, local, name, device)

    # -- collectives ----------------------------------------------------------------------
    def _comm(self, t: Tensor) -> Tensor:
        return t.to(self.device) if self.backend == "nccl" else t.cpu()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Sum ``values`` over all ranks (identity for one process); every rank gets the sums."""
        if not self.is_distributed:
            return list(values)
        t = self._comm(torch.tensor([float(v) for v in values], dtype=torch.float64))
        torch.distributed.all_reduce(t)
        return t.cpu().tolist()

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.is_distributed:
            torch.distributed.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects; tensors come back on the CPU)."""
        if not self.is_distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0, device=self._comm(
            torch.empty(0)).device)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast_module(self, module: nn.Module, *, buffers_only: bool = False) -> None:
        """Make every rank hold rank 0's parameters (unless ``buffers_only``) and buffers."""
        if not self.is_distributed:
            return
        tensors = [] if buffers_only else [p.detach() for p in module.parameters()]
        tensors += [b for b in module.buffers()]
        by_kind: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
        for t in tensors:
            by_kind.setdefault((t.dtype, t.device), []).append(t)
        with torch.no_grad():
            for group in by_kind.values():  # one broadcast per dtype: few, large messages
                flat = self._comm(torch.cat([t.reshape(-1) for t in group]))
                torch.distributed.broadcast(flat, src=0)
                offset = 0
                for t in group:
                    t.copy_(flat[offset:offset + t.numel()].view_as(t))
                    offset += t.numel()

    def unshard(self, t: Tensor) -> Tensor:
        """Reassemble per-rank shards ``samples[rank::world]`` into the full, ordered tensor.

        Every rank passes its shard ``(n_r, ...)`` (``n_r`` may be 0) and gets the whole
        ``(N, ...)`` back, in the original sample order (the inverse of ``[rank::world]``).
        """
        if not self.is_distributed:
            return t
        metas = self.gather_objects((tuple(t.shape), t.dtype))
        shapes = [s for s, _ in metas]
        ref = next(((s, d) for s, d in metas if s[0] > 0), None)
        if ref is None:
            return t
        tail, dtype = ref[0][1:], ref[1]
        longest = max(s[0] for s in shapes)
        mine = t.to(dtype).reshape(-1, *tail) if t.numel() else torch.empty(0, *tail, dtype=dtype)
        padded = torch.zeros(longest, *tail, dtype=dtype)
        padded[:len(mine)] = mine.cpu()
        parts = [self._comm(torch.empty_like(padded)) for _ in range(self.world)]
        torch.distributed.all_gather(parts, self._comm(padded))
        return interleave([p.cpu()[:s[0]] for p, s in zip(parts, shapes)])

    # -- data-parallel training -----------------------------------------------------------
    def wrap(self, module: nn.Module) -> nn.Module:
        """The module to call for a training step: ``DistributedDataParallel`` when distributed.

        DDP synchronises only the parameters that require a gradient when it is built, so the
        wrapper is rebuilt whenever the set of trainable parameters changes (a strategy phase, a
        gradual unfreeze); building it also broadcasts rank 0's parameters and buffers.
        """
        if not self.is_distributed:
            return module
        key = (id(module), tuple(p.requires_grad for p in module.parameters()))
        if self._ddp is not None and self._ddp_key == key:
            return self._ddp
        self._ddp = self._ddp_key = None  # release the old reducer and its gradient hooks
        ids = [self.device.index] if self.device.type == "cuda" else None
        self._ddp = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        self._ddp_key = key
        return self._ddp

    def release(self) -> None:
        """Drop the DDP wrapper (at the end of training)."""
        self._ddp = self._ddp_key = None

    def sync_context(self, forward: nn.Module, sync: bool):
        """``forward.no_sync()`` for a gradient-accumulation micro-step, else a no-op context."""
        if not sync and isinstance(forward, nn.parallel.DistributedDataParallel):
            return forward.no_sync()
        return contextlib.nullcontext()

    def convert_sync_batchnorm(self, model: nn.Module) -> Callable[[], None]:
        """Swap BatchNorm layers for ``SyncBatchNorm`` (nccl only); return the undo function.

        The swapped layers share their parameters and buffers with the originals, so the undo
        puts the originals back holding the trained values. On another backend (``gloo`` on
        the CPU) this warns and changes nothing: ``SyncBatchNorm`` runs on GPUs only.
        """
        if not self.is_distributed:
            return lambda: None
        if self.backend != "nccl":
            if self.is_main:
                warnings.warn(
                    f"finetune: sync_batchnorm=True is ignored with the {self.backend!r} "
                    "backend: SyncBatchNorm needs nccl (CUDA). Each process normalises with "
                    "its own batch; see docs/distributed.md.", stacklevel=3)
            return lambda: None
        swapped = _swap_batchnorm(model)

        def undo() -> None:
            for parent, name, original, sync in swapped:
                original.train(sync.training)
                setattr(parent, name, original)

        return undo


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """The backend to initialise: ``backend``, else ``$TRANSFERKIT_DIST_BACKEND``, else
    ``nccl`` for CUDA and ``gloo`` otherwise."""
    name = backend or os.environ.get(BACKEND_ENV) or (
        "nccl" if device.type == "cuda" else "gloo")
    name = name.lower()
    if name not in _BACKENDS:
        raise ValueError(
            f"Unknown torch.distributed backend {name!r} (from backend= or ${BACKEND_ENV}); "
            f"expected one of {list(_BACKENDS)}: 'gloo' for the CPU, 'nccl' for CUDA."
        )
    if name == "nccl" and device.type != "cuda":
        raise ValueError(
            f"The nccl backend needs CUDA devices but this run is on {device}. Use "
            f"backend 'gloo' (unset ${BACKEND_ENV}) or pass device='cuda'."
        )
    available = getattr(torch.distributed, "is_backend_available", None)
    if available is not None and not available(name):
        raise ValueError(
            f"The torch.distributed backend {name!r} is not available in this torch build; "
            "use 'gloo' (CPU) or 'nccl' (CUDA builds)."
        )
    return name


def _local_device(device: torch.device, local_rank: int) -> torch.device:
    if device.type != "cuda" or device.index is not None:
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise RuntimeError(
            f"LOCAL_RANK is {local_rank} but this machine has {count} CUDA device(s): start at "
            f"most one process per GPU (torchrun --nproc_per_node={count}), or pass "
            "device='cpu'."
        )
    return torch.device("cuda", local_rank)


def _destroy() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _swap_batchnorm(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module, nn.Module]]:
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
                    child, nn.SyncBatchNorm):
                sync = nn.SyncBatchNorm(child.num_features, child.eps, child.momentum,
                                        child.affine, child.track_running_stats)
                if child.affine:
                    sync.weight, sync.bias = child.weight, child.bias
                for buf in ("running_mean", "running_var", "num_batches_tracked"):
                    setattr(sync, buf, getattr(child, buf))
                sync.train(child.training)
                setattr(parent, name, sync)
                swapped.append((parent, name, child, sync))
    return swapped


def shard_positions(order: Sequence[int], rank: int, world: int) -> list[int]:
    """This rank's share of a one-process epoch ``order``, as positions in its cache shard.

    Rank ``r`` caches the samples ``r, r + world, r + 2 world, ...``; sample ``i`` sits at
    position ``i // world`` of that shard. The result keeps the relative order of ``order``
    and is padded (by wrapping around) to ``ceil(N / world)``, so that every rank runs the
    same number of steps. With one process it is ``order`` itself.

    Example:
        >>> shard_positions([4, 1, 3, 0, 2], rank=1, world=2)
        [0, 1, 0]
    """
    mine = [i // world for i in order if i % world == rank]
    size = -(-len(order) // world)
    if not mine:
        return []
    return (mine * (size // len(mine) + 1))[:size]


def interleave(parts: Sequence[Tensor]) -> Tensor:
    """Inverse of sharding by ``[rank::world]``: ``parts[r][j]`` becomes row ``j * world + r``."""
    world, n = len(parts), sum(len(p) for p in parts)
    out = parts[0].new_empty((n, *parts[0].shape[1:]))
    for r, p in enumerate(parts):
        out[r::world] = p
    return out
