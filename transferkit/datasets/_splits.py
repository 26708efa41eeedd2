"""The classification datasets' container and the helpers every classification loader shares.

:class:`TensorImageDataset` and :class:`DatasetSplit` are what the loaders return; the argument
checks, the per-class subsets and the stratified split are written once here and used by
Animal-MNIST (``animals.py``), Fashion-MNIST and digits (``__init__.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError

__all__ = ["TensorImageDataset", "DatasetSplit"]


class TensorImageDataset(Dataset):
    """Images and labels held as two tensors.

    Args:
        data: (N, C, H, W) float32 images in [0, 1].
        targets: (N,) int64 labels in ``range(len(classes))``.
        classes: the class names, indexed by label.

    Example:
        >>> ds = TensorImageDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), ("a", "b"))
        >>> image, label = ds[1]
        >>> image.shape, label
        (torch.Size([1, 4, 4]), 1)
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, classes: tuple[str, ...]):
        if data.ndim != 4 or data.dtype != torch.float32:
            raise DataError(f"data must be a (N, C, H, W) float32 tensor, got {data.dtype} "
                            f"{tuple(data.shape)}.")
        if targets.shape != (data.shape[0],) or targets.dtype != torch.int64:
            raise DataError(f"targets must be a ({data.shape[0]},) int64 tensor, got "
                            f"{targets.dtype} {tuple(targets.shape)}.")
        self.data = data
        self.targets = targets
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.data[index], int(self.targets[index])

    def __repr__(self) -> str:
        return (f"TensorImageDataset(n={len(self)}, image_shape={tuple(self.data.shape[1:])}, "
                f"classes={len(self.classes)})")


class DatasetSplit(NamedTuple):
    """A train set, a test set and the class names; unpacks as ``train, test, classes``."""

    train: TensorImageDataset
    test: TensorImageDataset
    classes: tuple[str, ...]


# --- argument checks and subsetting ---------------------------------------------------------

def _check_count(fn: str, name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int >= 1 or None, got "
                        f"{type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{fn}: {name} must be an int >= 1 or None, got {value}.")
    return int(value)


def _check_seed(fn: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int >= 0, got {type(value).__name__} {value!r}.")
    if value < 0:
        raise ValueError(f"{fn}: {name} must be an int >= 0, got {value}.")
    return int(value)


def _subset_per_class(
    fn: str, name: str, labels: np.ndarray, n: int | None, seed: int, classes: tuple[str, ...],
    split: str,
) -> np.ndarray:
    """Indices of ``n`` items per class drawn with ``seed``, in their original order."""
    if n is None:
        return np.arange(len(labels))
    counts = np.bincount(labels, minlength=len(classes))
    if n > counts.min():
        smallest = int(counts.argmin())
        raise DataError(
            f"{fn}: {name}={n} but the {split} set has only {counts.min()} images of class "
            f"{classes[smallest]!r} (the smallest class); use {name} <= {counts.min()}."
        )
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False)
              for c in range(len(classes))]
    return np.sort(np.concatenate(picked))


def _to_dataset(images: np.ndarray, labels: np.ndarray, scale: float,
                classes: tuple[str, ...]) -> TensorImageDataset:
    data = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(scale)
    return TensorImageDataset(data.unsqueeze(1),  # (N, H, W) -> (N, 1, H, W)
                              torch.from_numpy(labels.astype(np.int64)), classes)


def _make_split(
    fn: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
    scale: float, classes: tuple[str, ...], n_per_class: int | None,
    n_per_class_test: int | None, seed: int,
) -> DatasetSplit:
    (x_tr, y_tr), (x_te, y_te) = train, test
    # Subset before converting to float32: Fashion-MNIST in float32 is 220 MB.
    i_tr = _subset_per_class(fn, "n_per_class", y_tr, n_per_class, seed, classes, "training")
    i_te = _subset_per_class(fn, "n_per_class_test", y_te, n_per_class_test, seed, classes,
                             "test")
    return DatasetSplit(_to_dataset(x_tr[i_tr], y_tr[i_tr], scale, classes),
                        _to_dataset(x_te[i_te], y_te[i_te], scale, classes), classes)


def _stratified_split(images: np.ndarray, labels: np.ndarray, test_size: float,
                      split_seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_size, stratify=labels, random_state=split_seed)
    return (x_tr, y_tr), (x_te, y_te)
