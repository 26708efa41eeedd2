"""Training checkpoints: written atomically, read without unpickling code.

A checkpoint holds the model, optimiser, scheduler and grad-scaler states, the epoch and the
strategy's phase, the random-number states, what is frozen (``requires_grad`` per parameter and
the BatchNorm layers kept in eval mode) and the history so far.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from .._io import atomic_write
from ..errors import UnsafeCheckpointError, WeightsError

__all__ = ["atomic_save", "load_checkpoint", "rng_state", "set_rng_state", "LAST"]

LAST = "last.pt"


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash mid-write leaves the previous file intact.
    """
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: a full disk is OSError(ENOSPC)
            torch.save(obj, f)

    atomic_write(path, write)  # umask-honouring, fsynced, "No space left" named


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``."""
    import pickle

    size = os.path.getsize(path)
    if size == 0:
        raise WeightsError(f"The checkpoint {str(path)!r} is empty (0 bytes): a write was cut "
                           "off. Delete it to start afresh, or resume from a copy.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"Refused to load checkpoint {str(path)!r}: it holds objects that would run code "
            f"({str(exc).splitlines()[0][:200]})."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(
            f"The checkpoint {str(path)!r} ({size} bytes) is damaged and cannot be read "
            f"({str(exc).splitlines()[0][:160]}). Delete it to start afresh."
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != "transferkit-checkpoint":
        raise WeightsError(
            f"{str(path)!r} is not a transferkit training checkpoint. Resume from the "
            "checkpoint_dir that an earlier finetune call wrote."
        )
    return obj


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), numpy and Python random states, in tensor-only form."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _py_state(random.getstate()),
    }


def _py_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, torch.tensor(internal, dtype=torch.int64), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
