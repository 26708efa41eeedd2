"""The containers the dense-task loaders return: segmentation tiles and image-to-image pairs.

Both hold everything as tensors (like :class:`~transferkit.datasets.TensorImageDataset`, the
classification one): ``.data`` are the model inputs, ``.targets`` what it should predict, so
trainers can skip the DataLoader. ``.regions`` says where each item was cut from its source
image, so that the train/test separation can be checked, not just trusted.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from ..errors import DataError

__all__ = ["TensorSegmentationDataset", "SegmentationSplit", "TensorPairDataset", "PairSplit"]


def _check_images(name: str, x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.dtype != torch.float32:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"{name}: {what} must be a (N, C, H, W) float32 tensor, got {got}.")


def _check_regions(name: str, regions: torch.Tensor | None, n: int) -> None:
    if regions is not None and (regions.ndim != 2 or regions.shape[0] != n
                                or regions.dtype != torch.int64):
        raise DataError(f"{name}: regions must be a ({n}, k) int64 tensor, got "
                        f"{regions.dtype} {tuple(regions.shape)}.")


class TensorSegmentationDataset(Dataset):
    """Images and their per-pixel class masks, held as tensors.

    Args:
        data: (N, C, H, W) float32 images in [0, 1].
        targets: (N, H, W) int64 masks of class indices in ``range(len(classes))``.
        classes: the class names, indexed by mask value (index 0 is "background").
        regions: optional (N, k) int64 tensor saying where each item came from (the loader's
            docstring says what the k columns are).
        sources: optional per-item description of what each item was made of.

    Example:
        >>> ds = TensorSegmentationDataset(torch.zeros(2, 1, 4, 4),
        ...                                torch.zeros(2, 4, 4, dtype=torch.int64), ("bg", "fg"))
        >>> image, mask = ds[0]
        >>> tuple(image.shape), tuple(mask.shape), mask.dtype
        ((1, 4, 4), (4, 4), torch.int64)
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, classes: tuple[str, ...], *,
                 regions: torch.Tensor | None = None, sources: tuple | None = None):
        name = "TensorSegmentationDataset"
        _check_images(name, data, "data")
        if (not isinstance(targets, torch.Tensor) or targets.dtype != torch.int64
                or targets.shape != (data.shape[0], *data.shape[2:])):
            raise DataError(f"{name}: targets must be a ({data.shape[0]}, {data.shape[2]}, "
                            f"{data.shape[3]}) int64 tensor, got {targets.dtype} "
                            f"{tuple(targets.shape)}.")
        _check_regions(name, regions, data.shape[0])
        self.data, self.targets, self.classes = data, targets, tuple(classes)
        self.regions, self.sources = regions, sources

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data[index], self.targets[index]

    def __repr__(self) -> str:
        return (f"TensorSegmentationDataset(n={len(self)}, "
                f"image_shape={tuple(self.data.shape[1:])}, classes={len(self.classes)})")


class SegmentationSplit(NamedTuple):
    """A train set, a test set and the class names; unpacks as ``train, test, classes``."""

    train: TensorSegmentationDataset
    test: TensorSegmentationDataset
    classes: tuple[str, ...]


class TensorPairDataset(Dataset):
    """Input images and the target images a model should turn them into, held as tensors.

    Args:
        data: (N, 3, H, W) float32 inputs in [0, 1].
        targets: (N, 3, H, W) float32 targets in [0, 1], the same size as the inputs (unless
            the loader says otherwise, e.g. ``super_resolution(upsample=False)``).
        regions: optional (N, 5) int64 tensor ``(image, y0, x0, y1, x1)``: the crop's box in
            source image number ``image`` (an index into ``sources``).
        sources: the names of the source images.

    Example:
        >>> ds = TensorPairDataset(torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8))
        >>> x, y = ds[1]
        >>> tuple(x.shape), float(y.mean())
        ((3, 8, 8), 1.0)
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, *,
                 regions: torch.Tensor | None = None, sources: tuple[str, ...] | None = None):
        name = "TensorPairDataset"
        _check_images(name, data, "data")
        _check_images(name, targets, "targets")
        if targets.shape[0] != data.shape[0]:
            raise DataError(f"{name}: data has {data.shape[0]} images but targets has "
                            f"{targets.shape[0]}; they must pair up one to one.")
        _check_regions(name, regions, data.shape[0])
        self.data, self.targets = data, targets
        self.regions, self.sources = regions, sources

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data[index], self.targets[index]

    def __repr__(self) -> str:
        return (f"TensorPairDataset(n={len(self)}, input_shape={tuple(self.data.shape[1:])}, "
                f"target_shape={tuple(self.targets.shape[1:])})")


class PairSplit(NamedTuple):
    """A train set and a test set of image pairs; unpacks as ``train, test``."""

    train: TensorPairDataset
    test: TensorPairDataset
