"""Process-group context for ``finetune`` and ``evaluate`` (one process unless launched by
``torchrun``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DistContext"]


@dataclass
class DistContext:
    """Rank and world size of this process; a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device | None = None) -> "DistContext":
        return cls()

    def sum(self, values: list[float]) -> list[float]:
        """Sum ``values`` over all ranks (identity for one process)."""
        return values

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module to call for a training step (DistributedDataParallel when distributed)."""
        return module

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Make every rank hold rank 0's parameters and buffers."""

    def barrier(self) -> None:
        """Wait for every rank."""
