"""Small grayscale image datasets that work offline: Animal-MNIST, Fashion-MNIST, digits.

Every loader returns ``DatasetSplit(train, test, classes)``. ``train`` and ``test`` are
:class:`TensorImageDataset` objects: indexing yields ``(image, label)`` with ``image`` a float32
tensor of shape (1, H, W) in [0, 1] and ``label`` an int; ``.data`` (N, 1, H, W) and
``.targets`` (N,) hold everything as tensors, for trainers that skip the DataLoader.

Subsetting: ``n_per_class`` keeps that many training images of each class, drawn with
``seed``; ``n_per_class_test`` does the same for the test set, which is otherwise kept whole so
that scores stay comparable. Where a dataset has no official split, the split is drawn once
with ``split_seed`` (default 0), so the test set does not change with ``seed``.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError

__all__ = [
    "TensorImageDataset",
    "DatasetSplit",
    "animal_mnist",
    "fashion_mnist",
    "digits",
    "ANIMAL_MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "DEBIAN_FASHION_MNIST_DIR",
    # dense tasks (segmentation, image-to-image): loaders in nuclei.py, scenes.py, photos.py
    "TensorSegmentationDataset",
    "SegmentationSplit",
    "TensorPairDataset",
    "PairSplit",
    "nuclei",
    "NUCLEI_CLASSES",
    "animal_scenes",
    "ANIMAL_SCENES_CLASSES",
    "super_resolution",
    "colorization",
    "bicubic_degrade",
    "luminance",
]

ANIMAL_MNIST_CLASSES = (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Where Debian's ``dataset-fashion-mnist`` package puts the gzipped idx files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


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


# --- Animal-MNIST ---------------------------------------------------------------------------

# numpy's array-rebuilding function, found the way pickle itself finds it; it lives in
# numpy.core.multiarray before numpy 2 and numpy._core.multiarray since.
_NP_RECONSTRUCT = np.empty(0).__reduce__()[0]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and refuses every other global (so no code can run)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in {("numpy.core.multiarray", "_reconstruct"),
                              ("numpy._core.multiarray", "_reconstruct")}:
            return _NP_RECONSTRUCT
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only plain numpy arrays are allowed here")


def _load_numpy_pickle(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    try:
        array = _NumpyOnlyUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a pickled numpy array as expected ({exc}); reinstall "
                        f"the package: pip install --force-reinstall animal-mnist==0.4") from None
    if not isinstance(array, np.ndarray) or array.dtype == object:
        raise DataError(f"{path} should hold a numeric numpy array, got {type(array).__name__}.")
    return array


def _animal_mnist_dir() -> Path:
    # find_spec locates the package without importing it. Its __init__ is empty today, but its
    # dataset_Loader module imports tensorflow, which the data does not need.
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("animal_mnist needs the package animal-mnist, which is not installed. "
                        "Fix: pip install --no-deps animal-mnist==0.4 (its tensorflow and "
                        "pandas requirements are not needed for the data).")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"


def animal_mnist(
    *, n_per_class: int | None = None, n_per_class_test: int | None = None, seed: int = 0,
    split_seed: int = 0,
) -> DatasetSplit:
    """Animal-MNIST: 10,000 28x28 animal silhouettes, 10 classes of 1,000 (MIT licence).

    Read from the two gzipped pickles in the installed ``animal-mnist==0.4`` package, without
    importing it. Trust decision: the pickles are data files of an installed package, and they
    are still read with an unpickler that only allows numpy's array reconstruction, so a
    tampered file cannot run code. The package has no train/test split, so this function makes
    a stratified 80/20 split with ``split_seed``: 8,000 training images (800 per class) and
    2,000 test images (200 per class).

    Args:
        n_per_class: keep this many training images per class (at most 800), drawn with
            ``seed``; None keeps all.
        n_per_class_test: the same for the test set (at most 200); None keeps all.
        seed: seed of the per-class subsets.
        split_seed: seed of the 80/20 split; keep the default to compare results.

    Returns:
        ``DatasetSplit(train, test, classes)`` with images (1, 28, 28) in [0, 1] and
        ``classes`` = ("bear", "bird", ..., "zebra").

    Example:
        >>> train, test, classes = animal_mnist(n_per_class=10)
        >>> len(train), len(test), classes[6]
        (100, 2000, 'giraffe')
    """
    fn = "animal_mnist"
    n_per_class = _check_count(fn, "n_per_class", n_per_class)
    n_per_class_test = _check_count(fn, "n_per_class_test", n_per_class_test)
    seed, split_seed = _check_seed(fn, "seed", seed), _check_seed(fn, "split_seed", split_seed)
    folder = _animal_mnist_dir()
    images = _load_numpy_pickle(folder / "animal_data_version_3.gz")  # (10000, 28, 28) uint8
    labels = _load_numpy_pickle(folder / "animal_label_version_3.gz")  # (10000,) int64
    if (images.shape != (10000, 28, 28) or images.dtype != np.uint8
            or labels.shape != (10000,) or not np.isin(labels, np.arange(10)).all()):
        raise DataError(f"Animal-MNIST files in {folder} have unexpected arrays: images "
                        f"{images.dtype} {images.shape}, labels {labels.shape} (expected "
                        f"uint8 (10000, 28, 28) and (10000,) in 0..9). Is animal-mnist 0.4 "
                        f"installed?")
    train, test = _stratified_split(images, labels, 0.2, split_seed)
    return _make_split(fn, train, test, 255.0, ANIMAL_MNIST_CLASSES, n_per_class,
                       n_per_class_test, seed)


# --- Fashion-MNIST --------------------------------------------------------------------------

def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an idx file of unsigned bytes (gzipped if the name ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic = 0x0800 + ndim  # zero, zero, 0x08 = unsigned byte, number of dimensions
    if len(raw) < 4 + 4 * ndim or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(f"{path} is not an idx file of {ndim}-d unsigned bytes "
                        f"(expected magic number {magic}).")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: its header says {shape} but it holds "
                        f"{body.size} values.")
    return body.reshape(shape)


def _find_fashion_files(folder: Path) -> dict[str, Path] | None:
    """The four idx files in ``folder`` or in torchvision's ``folder/FashionMNIST/raw``."""
    for base in (folder, folder / "FashionMNIST" / "raw"):
        found = {}
        for key, stem in _FASHION_FILES.items():
            hits = [base / (stem + ext) for ext in ("", ".gz") if (base / (stem + ext)).is_file()]
            if hits:
                found[key] = hits[0]
        if len(found) == len(_FASHION_FILES):
            return found
    return None


def _default_download_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "transferkit" / "fashion-mnist"


def fashion_mnist(
    root: str | os.PathLike[str] | None = None, *, n_per_class: int | None = None,
    n_per_class_test: int | None = None, seed: int = 0, download: bool = False,
) -> DatasetSplit:
    """Fashion-MNIST: Zalando's 70,000 28x28 clothing images, official 60,000/10,000 split.

    The idx files (plain or gzipped) are looked for in ``root`` (or its ``FashionMNIST/raw``
    folder, torchvision's layout), then in ``/usr/share/datasets/fashion-mnist`` (Debian's
    ``dataset-fashion-mnist``), then, only with ``download=True``, fetched by torchvision's
    ``FashionMNIST`` into ``root`` (default ``~/.cache/transferkit/fashion-mnist``).

    Args:
        root: a folder holding the idx files, or None.
        n_per_class: keep this many training images per class (at most 6,000), drawn with
            ``seed``; None keeps all.
        n_per_class_test: the same for the test set (at most 1,000); None keeps all.
        seed: seed of the per-class subsets.
        download: allow a download when no local copy is found.

    Returns:
        ``DatasetSplit(train, test, classes)`` with images (1, 28, 28) in [0, 1].

    Raises:
        DataError: no local copy and ``download=False`` (the message lists the three fixes).

    Example:
        >>> train, test, classes = fashion_mnist(n_per_class=100)  # doctest: +SKIP
        >>> len(train), len(test), classes[9]  # doctest: +SKIP
        (1000, 10000, 'Ankle boot')
    """
    fn = "fashion_mnist"
    n_per_class = _check_count(fn, "n_per_class", n_per_class)
    n_per_class_test = _check_count(fn, "n_per_class_test", n_per_class_test)
    seed = _check_seed(fn, "seed", seed)
    if not isinstance(download, bool):
        raise TypeError(f"{fn}: download must be a bool, got {download!r}.")
    folders = ([Path(root)] if root is not None else []) + [DEBIAN_FASHION_MNIST_DIR]
    files = next((f for f in map(_find_fashion_files, folders) if f is not None), None)
    if files is None and download:
        from torchvision.datasets import FashionMNIST

        target = Path(root) if root is not None else _default_download_root()
        FashionMNIST(str(target), train=True, download=True)  # fetches all four files
        files = _find_fashion_files(target)
    if files is None:
        searched = ", ".join(str(f) for f in folders)
        raise DataError(
            f"{fn}: Fashion-MNIST's idx files ({', '.join(_FASHION_FILES.values())}, plain or "
            f".gz) are not in {searched}. Fix: apt-get install dataset-fashion-mnist, or pass "
            f"root=... (a folder holding them), or download=True to fetch them with torchvision."
        )
    train = (_read_idx(files["train_images"], 3), _read_idx(files["train_labels"], 1))
    test = (_read_idx(files["test_images"], 3), _read_idx(files["test_labels"], 1))
    for (x, y), split in ((train, "train"), (test, "test")):
        if x.shape[0] != y.shape[0] or (y.size and y.max() >= len(FASHION_MNIST_CLASSES)):
            raise DataError(f"{fn}: the {split} files disagree ({x.shape[0]} images, "
                            f"{y.shape[0]} labels) or hold labels >= 10.")
    return _make_split(fn, train, test, 255.0, FASHION_MNIST_CLASSES, n_per_class,
                       n_per_class_test, seed)


# --- scikit-learn digits --------------------------------------------------------------------

def digits(
    *, n_per_class: int | None = None, n_per_class_test: int | None = None, seed: int = 0,
    split_seed: int = 0,
) -> DatasetSplit:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), no download.

    Pixel values 0..16 are scaled to [0, 1]. There is no official split; this function makes a
    stratified 75/25 split with ``split_seed``: 1,347 training and 450 test images (with the
    default ``split_seed`` the smallest class has 131 training and 43 test images).

    Args:
        n_per_class: keep this many training images per class (at most 131), drawn with
            ``seed``; None keeps all.
        n_per_class_test: the same for the test set (at most 43); None keeps all.
        seed: seed of the per-class subsets.
        split_seed: seed of the 75/25 split; keep the default to compare results.

    Returns:
        ``DatasetSplit(train, test, classes)`` with images (1, 8, 8) in [0, 1] and
        ``classes`` = ("0", ..., "9").

    Example:
        >>> train, test, classes = digits()
        >>> len(train), len(test), tuple(train[0][0].shape)
        (1347, 450, (1, 8, 8))
    """
    from sklearn.datasets import load_digits

    fn = "digits"
    n_per_class = _check_count(fn, "n_per_class", n_per_class)
    n_per_class_test = _check_count(fn, "n_per_class_test", n_per_class_test)
    seed, split_seed = _check_seed(fn, "seed", seed), _check_seed(fn, "split_seed", split_seed)
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    train, test = _stratified_split(images, bunch.target.astype(np.int64), 0.25, split_seed)
    classes = tuple(str(c) for c in range(10))
    return _make_split(fn, train, test, 16.0, classes, n_per_class, n_per_class_test, seed)


# --- dense-task loaders (their own modules; imported last, they import nothing from here) ----

from .containers import (  # noqa: E402
    PairSplit, SegmentationSplit, TensorPairDataset, TensorSegmentationDataset)
from .nuclei import NUCLEI_CLASSES, nuclei  # noqa: E402
from .scenes import ANIMAL_SCENES_CLASSES, animal_scenes  # noqa: E402
from .photos import bicubic_degrade, colorization, luminance, super_resolution  # noqa: E402
