"""Data in: a Dataset, a DataLoader, a pair ``(X, y)`` or an image folder, as ready batches.

Two paths, chosen from what comes in:

- **Tensors** (``(X, y)``, a ``TensorDataset``, a dataset with ``.data``/``.targets`` tensors,
  or a ``Subset`` of one): batches are sliced from memory and preprocessed *as batches* on the
  device by :class:`BatchPrep` (resize, centre crop or random resized crop + flip, grey to RGB,
  normalisation). ``uint8`` pixels are scaled to [0, 1]; float pixels are taken to be in [0, 1].
- **Samples** (an image folder, a dataset of PIL images): torchvision transforms per sample in
  DataLoader workers, from the backbone's ``data_config``.

A ``DataLoader`` is used as it is: its batches are already what the user wants the model to see
(only a single grey channel is repeated to three).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import (DataLoader, Dataset, DistributedSampler, Sampler, Subset,
                              TensorDataset, get_worker_info)

from .._utils import resolve_device
from ..backbones import DataConfig
from ..errors import DataError
from .dense import TARGET_KINDS, DenseSampleTransform, SegmentationFolder, dense_collate
from .inputs import PILPairs, image_tensor, is_pil_list, label_tensor, to_tensor
from .preprocess import BatchPrep, fix_channels, sample_transform

__all__ = [
    "BatchPrep",
    "Source",
    "as_source",
    "iter_eval_batches",
    "resolve_device",
    "sample_transform",
    "stratified_split",
]

# -- sources ---------------------------------------------------------------------------------
class _Transformed(Dataset):
    def __init__(self, dataset: Dataset, transform: Any) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.dataset[i][:2]
        if getattr(self.transform, "paired", False):  # dense tasks: image and target together
            return self.transform(x, y)
        return self.transform(x), y


class _EpochOrder(Sampler):
    """Yields ``(index, epoch seed)`` in the order set for the coming pass.

    One DataLoader (and its persistent workers) serves every epoch: only this order and the
    seed change. The seed is drawn from the main process's random state, so a resumed run
    (whose random state is restored) draws the same one.
    """

    def __init__(self) -> None:
        self.order: list[int] = []
        self.seed = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(i, self.seed) for i in self.order])

    def __len__(self) -> int:
        return len(self.order)


class _Seeded(Dataset):
    """In a worker, seed the random state from ``(epoch seed, index)`` before each sample, so
    that a sample's augmentation depends on neither the number of workers nor their history."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        i, seed = key
        if get_worker_info() is not None:  # the main process keeps its own random stream
            s = (seed * 1_000_003 + i) % 2**63
            torch.manual_seed(s)
            random.seed(s)
        return self.dataset[i]


@dataclass
class Source:
    """Where batches come from: tensors in memory, samples through a DataLoader, or a loader.

    ``kind`` is ``"tensor"``, ``"samples"`` or ``"loader"``. ``targets`` is known for tensor
    sources and for datasets that expose ``.targets``.
    """

    kind: str
    n: int
    X: Tensor | None = None
    targets: Tensor | None = None
    dataset: Dataset | None = None
    loader: DataLoader | None = None
    classes: list[str] | None = None
    transform: Any = None
    _loaders: dict = field(default_factory=dict, repr=False, compare=False)

    def indices(self, epoch: int, *, shuffle: bool, seed: int, rank: int = 0,
                world: int = 1, pad: bool = True) -> list[int]:
        """Sample order of one epoch: torch's DistributedSampler order (also with one process).

        With ``pad=False`` (evaluation) each sample appears on exactly one rank.
        """
        if not pad:
            return list(range(self.n))[rank::world]
        sampler = DistributedSampler(range(self.n), num_replicas=world, rank=rank,
                                     shuffle=shuffle, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    def batches(self, order: Sequence[int], *, batch_size: int, device: torch.device,
                prep: BatchPrep | None, num_workers: int = 0, drop_last: bool = False,
                persistent: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """``(inputs, targets)`` on ``device``, preprocessed, in ``order``.

        ``persistent=True`` (passes that repeat, such as epochs) keeps one DataLoader and its
        workers for every later call with the same batching.
        """
        if self.kind == "loader":
            for x, y in self.loader:  # type: ignore[union-attr]
                x = x.to(device, non_blocking=True)
                yield fix_channels(x, prep.config.in_chans) if prep else x, y.to(device)
            return
        if self.kind == "tensor":
            order = list(order)
            stop = len(order) - (len(order) % batch_size if drop_last else 0)
            first = order[0] if order else 0
            fresh = prep is not None and prep.normalize  # prep makes new tensors from views
            if fresh and order == list(range(first, first + len(order))):  # in order: views
                batch = [slice(first + i, first + i + batch_size)
                         for i in range(0, stop, batch_size)]
            else:
                idx = torch.as_tensor(order, dtype=torch.long)
                batch = [idx[i:i + batch_size] for i in range(0, stop, batch_size)]
            for b in batch:
                x = self.X[b].to(device, non_blocking=True)  # type: ignore[index]
                y = self.targets[b].to(device, non_blocking=True)  # type: ignore[index]
                if getattr(prep, "paired", False):  # dense: the targets move with the images
                    yield prep(x, y)  # type: ignore[misc]
                else:
                    yield (prep(x) if prep else x), y
            return
        loader = self._samples_loader(batch_size, num_workers, device, drop_last, persistent)
        loader.sampler.order = list(order)  # type: ignore[attr-defined]
        if num_workers > 0:  # one draw per pass, persistent workers or not (resume-safe)
            loader.sampler.seed = int(torch.randint(2**62, ()))  # type: ignore[attr-defined]
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            # Samples already transformed (folders) only need channels; raw tensors need all.
            x = fix_channels(x, prep.config.in_chans) if self.transform is not None else (
                prep(x) if prep else x)
            yield x, _targets_to(y, device)

    def _samples_loader(self, batch_size: int, num_workers: int, device: torch.device,
                        drop_last: bool, persistent: bool) -> DataLoader:
        key = (batch_size, num_workers, device.type, drop_last)
        if persistent and key in self._loaders:
            return self._loaders[key]
        ds = self.dataset if self.transform is None else _Transformed(self.dataset, self.transform)
        # With workers, samples are seeded by _Seeded: the loader's own base seed must not
        # draw from the global random state (a resumed run would draw once more).
        paired = getattr(self.transform, "paired", False)
        loader = DataLoader(
            _Seeded(ds), batch_size=batch_size, sampler=_EpochOrder(), num_workers=num_workers,
            collate_fn=dense_collate if paired else None,
            pin_memory=device.type == "cuda", drop_last=drop_last,
            persistent_workers=persistent and num_workers > 0,
            generator=torch.Generator().manual_seed(0) if num_workers > 0 else None,
        )
        if persistent:
            self._loaders[key] = loader
        return loader

    def check_finite(self) -> None:
        """Fail on NaN or infinite pixels (tensor sources are checked whole)."""
        if self.X is not None and self.X.is_floating_point() and not torch.isfinite(self.X).all():
            bad = (~torch.isfinite(self.X.flatten(1))).any(1).nonzero().flatten()[:5].tolist()
            raise DataError(
                f"The inputs hold NaN or infinite values (first bad samples: {bad}). Clean or "
                "drop those samples before training."
            )


def _targets_to(y: Any, device: torch.device) -> Any:
    """A batch's targets on ``device``; a list (dense targets of different sizes) item by item."""
    if isinstance(y, list) and y and isinstance(y[0], Tensor):
        return [t.to(device, non_blocking=True) for t in y]
    return torch.as_tensor(y).to(device)


def _tensor_parts(data: Any) -> tuple[Tensor, Tensor, list[str] | None] | None:
    """``(X, targets, classes)`` when ``data`` is held in memory as tensors, else ``None``."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return to_tensor(data[0], "X"), to_tensor(data[1], "y"), None
    if isinstance(data, TensorDataset) and len(data.tensors) >= 2:
        return data.tensors[0], data.tensors[1], None
    if isinstance(data, Subset):
        inner = _tensor_parts(data.dataset)
        if inner is not None:
            idx = torch.as_tensor(list(data.indices), dtype=torch.long)
            return inner[0][idx], inner[1][idx], inner[2]
        return None
    X, y = getattr(data, "data", None), getattr(data, "targets", None)
    if isinstance(data, Dataset) and isinstance(X, Tensor) and X.ndim == 4 and y is not None:
        return X, torch.as_tensor(y), list(getattr(data, "classes", []) or []) or None
    return None


def _dense_source(data: Any, config: DataConfig, *, train: bool, augment: bool, target: str,
                 transform: Any = None):
    """A :class:`Source` of dense pairs (``as_source(target=...)``).

    ``(X, targets)`` tensors (or a dataset with ``.data``/``.targets`` tensors) stay in
    memory and are preprocessed as batches by :class:`~transferkit.data.dense.DensePrep`; a
    folder or any other ``Dataset`` goes through
    :class:`~transferkit.data.dense.DenseSampleTransform` per sample.
    """
    if target not in TARGET_KINDS:
        raise ValueError(f"target must be one of {list(TARGET_KINDS)}, got {target!r}.")
    if isinstance(data, (str, os.PathLike)):
        data = SegmentationFolder(data) if target == "mask" else data
    parts = _tensor_parts(data) if transform is None and not isinstance(
        data, SegmentationFolder) else None
    if parts is not None:
        X, y, classes = parts
        if len(X) != len(y):
            raise DataError(f"The images hold {len(X)} samples but the "
                            f"{'masks' if target == 'mask' else 'targets'} {len(y)}; they "
                            "must pair up one to one.")
        X = X[:, None] if X.ndim == 3 else X  # (N, H, W) grey images
        if target == "mask" and y.ndim == 4 and y.shape[1] == 1:
            y = y[:, 0]  # (N, 1, H, W) masks
        if target == "mask" and not (y.is_floating_point() or y.dtype == torch.bool):
            y = y.long()
        return Source("tensor", n=len(X), X=X, targets=y, classes=classes)
    if not isinstance(data, Dataset):
        raise TypeError(
            "Dense data must be (X, masks) tensors or arrays, a Dataset yielding (image, mask), "
            f"or a folder root/images + root/masks; got {type(data).__name__}.")
    tf = transform or DenseSampleTransform(config, train=train, augment=augment, target=target)
    return Source("samples", n=len(data), dataset=data, transform=tf,  # type: ignore[arg-type]
                  classes=list(getattr(data, "classes", []) or []) or None)


def as_source(data: Any, config: DataConfig, *, train: bool, augment: bool = True,
              transform: Any = None, class_names: Sequence[str] | None = None,
              skip_bad_images: bool = False, target: str | None = None) -> Source:
    """Classify ``data`` into a :class:`Source` (see the module docstring).

    ``target="mask"`` or ``"image"``: a dense task's data (:mod:`transferkit.data.dense`).

    An image folder is read by :class:`transferkit.data.files.ImageFiles`: its folders map to
    ``class_names`` (the model's) by name, and unreadable files raise (or are skipped with
    ``skip_bad_images=True``).
    """
    if data is None:
        raise DataError("No data was given: pass a Dataset, a DataLoader, (X, y) or a folder.")
    if isinstance(data, DataLoader):
        return Source("loader", n=len(data.dataset), loader=data)  # type: ignore[arg-type]
    if target is not None:
        return _non_empty(_dense_source(data, config, train=train, augment=augment,
                                        target=target, transform=transform))
    if isinstance(data, (str, os.PathLike)):
        return _folder_source(Path(data), config, train=train, augment=augment,
                              transform=transform, class_names=class_names,
                              skip_bad_images=skip_bad_images)
    if isinstance(data, (tuple, list)) and len(data) == 2 and is_pil_list(data[0]):
        data = PILPairs(*data)  # sizes may differ: per-sample transforms, like a folder
    parts = _tensor_parts(data) if transform is None else None
    if parts is not None:
        X, y, classes = parts
        X = image_tensor(X, config.in_chans)  # the rules of data/inputs.py
        y = label_tensor(y, len(X))
        return _non_empty(Source("tensor", n=len(X), X=X, targets=y, classes=classes))
    if not isinstance(data, Dataset):
        raise TypeError(
            "Data must be a torch Dataset, a DataLoader, a pair (X, y) of tensors or arrays, "
            f"or a path to an image folder; got {type(data).__name__}."
        )
    targets = getattr(data, "targets", None)
    tf = transform
    if tf is None and len(data) > 0 and not isinstance(data[0][0], Tensor):  # type: ignore
        tf = sample_transform(config, train=train, augment=augment)
    return _non_empty(Source(
        "samples", n=len(data), dataset=data, transform=tf,  # type: ignore[arg-type]
        targets=torch.as_tensor(targets) if targets is not None else None,
        classes=list(getattr(data, "classes", []) or []) or None,
    ))


def _folder_source(root: Path, config: DataConfig, *, train: bool, augment: bool,
                   transform: Any, class_names: Sequence[str] | None = None,
                   skip_bad_images: bool = False) -> Source:
    from .files import ImageFiles

    if not root.is_dir():
        raise DataError(
            f"Image folder {str(root)!r} does not exist. Expected the ImageFolder layout: "
            "root/<class name>/<image files>."
        )
    try:
        ds = ImageFiles(root, class_names=class_names, skip_bad_images=skip_bad_images)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"Cannot read {str(root)!r} as an image folder: {exc}") from None
    tf = transform or sample_transform(config, train=train, augment=augment)
    return _non_empty(Source("samples", n=len(ds), dataset=ds, transform=tf,
                             targets=torch.as_tensor(ds.targets), classes=list(ds.classes)))


def _non_empty(source: Source) -> Source:
    if source.n == 0:
        raise DataError("The dataset is empty: there is nothing to train or evaluate on.")
    return source


def iter_eval_batches(data: Any, model: Any, *, batch_size: int = 64,
                      num_workers: int | None = None, device: torch.device | str | None = None,
                      rank: int = 0, world: int = 1) -> Iterator[tuple[Tensor, Tensor]]:
    """Evaluation batches ``(inputs, targets)``, preprocessed for ``model`` and on ``device``.

    With ``world > 1`` this rank gets every ``world``-th sample, so that every sample is
    evaluated exactly once across ranks.
    """
    config = model.backbone.data_config
    source = as_source(data, config, train=False, augment=False,
                       class_names=getattr(model, "class_names", None))
    dev = resolve_device(device)
    order = source.indices(0, shuffle=False, seed=0, rank=rank, world=world, pad=False)
    workers = default_workers(source) if num_workers is None else num_workers
    yield from source.batches(order, batch_size=batch_size, device=dev,
                              prep=BatchPrep(config, train=False), num_workers=workers)


def default_workers(source: Source) -> int:
    """DataLoader workers: none for tensors in memory, otherwise up to 4 (keep cores busy)."""
    if source.kind != "samples":
        return 0
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(0, min(4, cores - 1))


def stratified_split(data: Any, val_fraction: float = 0.2, *, seed: int = 0
                     ) -> tuple[Subset, Subset]:
    """A seeded, stratified train/validation split of a dataset with targets (or ``(X, y)``).

    Example:
        >>> import torch, transferkit as tk
        >>> X, y = torch.rand(20, 3, 8, 8), torch.arange(20) % 2
        >>> train, val = tk.stratified_split((X, y), 0.25, seed=0)
        >>> len(train), len(val)
        (15, 5)
    """
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise ValueError(f"stratified_split: val_fraction must be in (0, 1), got {val_fraction}.")
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = (torch.as_tensor(np.asarray(a)) if not isinstance(a, Tensor) else a for a in data)
        data = TensorDataset(X, y)
        targets = y
    else:
        targets = getattr(data, "targets", None)
        if targets is None:
            parts = _tensor_parts(data)
            targets = parts[1] if parts else None
    if targets is None:
        raise DataError("stratified_split needs labels: a dataset with .targets, or (X, y).")
    y_np = np.asarray(torch.as_tensor(targets))
    idx = np.arange(len(y_np))
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=y_np)
    return Subset(data, sorted(tr.tolist())), Subset(data, sorted(va.tolist()))
