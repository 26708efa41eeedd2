"""Small helpers shared by every layer: device selection, the autocast dtype, the inference
context and dotted-path lookups in a module."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["AMP_CHOICES", "autocast", "autocast_dtype", "inference_context", "resolve_device",
           "resolve_path"]

#: The values every verb's ``amp`` option takes.
AMP_CHOICES = (False, True, "bf16", "fp16")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` means CUDA when present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Unknown device {device!r}: use 'cpu', 'cuda', 'cuda:1', 'mps' or "
                         f"None (CUDA when present) ({str(exc).splitlines()[0][:120]}).") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available here (no GPU, or a "
                         "CPU-only torch build). Use 'cpu', or None to pick it.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA "
                         "device(s) here.")
    return dev


def autocast_dtype(amp: bool | str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``: the one rule every verb follows.

    ``False``: none (full precision). ``True``: float16 on CUDA, bfloat16 elsewhere.
    ``"bf16"``: bfloat16. ``"fp16"``: float16 on CUDA; bfloat16 elsewhere, because float16
    autocast on the CPU is slow and training under it would need a gradient scaler, which
    only CUDA has here.

    Example:
        >>> import torch
        >>> autocast_dtype("fp16", torch.device("cpu"))
        torch.bfloat16
    """
    if amp not in AMP_CHOICES or (amp is not True and amp is not False and
                                  not isinstance(amp, str)):
        raise ValueError(f"amp must be one of {list(AMP_CHOICES)}, got {amp!r}.")
    if amp is False:
        return None
    cuda = torch.device(device).type == "cuda"
    return torch.float16 if cuda and amp in (True, "fp16") else torch.bfloat16


def autocast(amp: bool | str, device: torch.device | str) -> Any:
    """The autocast context for ``amp`` on ``device`` (:func:`autocast_dtype`); a no-op
    context for ``amp=False``.

    Example:
        >>> import torch
        >>> with autocast(True, "cpu"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    dtype = autocast_dtype(amp, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def resolve_path(root: nn.Module, path: str) -> nn.Module | nn.Parameter:
    """``root.a.b.0`` by its dotted path: a submodule, else a parameter (torch's own lookups)."""
    try:
        return root.get_submodule(path)
    except AttributeError:
        return root.get_parameter(path)


@contextmanager
def inference_context(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` in eval mode on ``device`` under ``torch.inference_mode``.

    Afterwards every submodule gets back its own train/eval flag (frozen BatchNorm layers of a
    training model stay in eval mode) and the model goes back to the device it was on.
    """
    modes = [(m, m.training) for m in model.modules()]
    first = next(model.parameters(), None)
    home = first.device if first is not None else None
    model.eval()
    model.to(device)
    try:
        with torch.inference_mode():
            yield model
    finally:
        for m, training in modes:
            m.training = training
        if home is not None and home != device:
            model.to(home)
