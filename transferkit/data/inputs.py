"""In-memory inputs ``(X, y)``: what is accepted, what is converted, and the errors for the rest.

One place for the rules of the tensor path (every verb reads ``(X, y)`` through
:func:`transferkit.data.sources.as_source`, which calls these):

- ``X``: a tensor or array ``(N, C, H, W)``, or ``(N, H, W)`` for grey images. ``float64``,
  ``float16`` and ``bfloat16`` become ``float32``; ``bool`` and complex are refused. A
  channels-last ``(N, H, W, C)`` batch is refused with the ``permute`` that fixes it; other
  ranks (a 5-D video batch) are refused. A list of PIL images (sizes may differ) is read
  like an image folder, sample by sample.
- Pixels: ``uint8``, integers in 0..255, or floats in [0, 1]
  (:func:`transferkit.data.preprocess.check_pixels`, checked once over all of ``X``).
- ``y``: integer class indices ``(N,)`` (``(N, 1)`` is flattened), multi-hot or real-valued
  targets ``(N, K)``. Strings are refused with the mapping that fixes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from .preprocess import check_pixels

__all__ = ["PILPairs", "is_pil_list", "to_tensor", "image_tensor", "label_tensor"]

_WIDEN = (torch.float64, torch.float16, torch.bfloat16)


def is_pil_list(x: Any) -> bool:
    """Whether ``x`` is a non-empty list or tuple of PIL images."""
    from PIL import Image

    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(i, Image.Image) for i in x)


class PILPairs(Dataset):
    """``(image, label)`` pairs from a list of PIL images and their labels."""

    def __init__(self, images: Sequence[Any], labels: Any) -> None:
        self.images = list(images)
        self.targets = label_tensor(to_tensor(labels, "y"), len(self.images))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, Tensor]:
        return self.images[i], self.targets[i]


def to_tensor(a: Any, what: str) -> Tensor:
    """``a`` (a tensor, an array, a list of numbers) as a tensor; a clear error otherwise."""
    if isinstance(a, Tensor):
        return a
    arr = np.asarray(a) if not isinstance(a, np.ndarray) else a
    if arr.dtype.kind in "USO":
        sample = arr.ravel()[:3].tolist()
        if what == "y":
            raise DataError(
                f"The labels y are {arr.dtype.kind == 'O' and 'objects' or 'strings'} (first: "
                f"{sample}); they must be integer class indices. Map them first: "
                "names = sorted(set(y)); y = [names.index(v) for v in y], and pass "
                "class_names=names to replace_head."
            )
        raise DataError(
            f"{what} holds {type(sample[0]).__name__ if sample else 'object'} values, not "
            "numbers. Pass a tensor or array of pixels (N, C, H, W), or a list of PIL images."
        )
    if arr.dtype.kind == "c":
        raise DataError(f"{what} is complex ({arr.dtype}); pass real pixel values.")
    return torch.from_numpy(np.ascontiguousarray(arr))


def image_tensor(X: Tensor, in_chans: int) -> Tensor:
    """Images ``(N, C, H, W)`` from ``X`` by the rules of the module docstring."""
    if X.dtype == torch.bool or X.is_complex():
        raise DataError(f"Images must be uint8 or float pixels, got {X.dtype}. Pass "
                        "X.to(torch.uint8) * 255 for a mask, or float values in [0, 1].")
    if X.dtype in _WIDEN:
        X = X.float()
    if X.ndim == 3:  # (N, H, W) grey images
        X = X[:, None]
    if X.ndim != 4:
        raise DataError(
            f"Images must be a batch (N, C, H, W) or (N, H, W), got a {X.ndim}-D tensor of "
            f"shape {tuple(X.shape)}. "
            + ("For frames or volumes, fold the extra axis into the batch: "
               "X.flatten(0, 1)." if X.ndim == 5 else "Add or remove axes to match.")
        )
    c, last = X.shape[1], X.shape[-1]
    if c not in (1, in_chans) and last in (1, in_chans):
        raise DataError(
            f"Images of shape {tuple(X.shape)} look channels-last (N, H, W, C); transferkit "
            "takes (N, C, H, W). Pass X.permute(0, 3, 1, 2) (numpy: X.transpose(0, 3, 1, 2))."
        )
    check_pixels(X)  # the pixel rule of preprocess.py, once over all the data
    if not X.is_floating_point() and X.dtype != torch.uint8:
        X = X.to(torch.uint8)  # integers in 0..255: uint8 (a quarter or an eighth the memory)
    return X


def label_tensor(y: Tensor, n: int) -> Tensor:
    """Labels by the rules of the module docstring; their count must be ``n``."""
    if len(y) != n:
        raise DataError(f"X has {n} samples but y has {len(y)}; they must match.")
    if y.dtype == torch.bool:
        y = y.long() if y.ndim == 1 else y.float()
    if not y.is_floating_point():
        if y.ndim == 2 and y.shape[1] == 1:  # (N, 1) class indices
            y = y[:, 0]
        return y.long()
    return y.float() if y.dtype in _WIDEN else y
