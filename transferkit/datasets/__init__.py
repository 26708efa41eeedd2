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
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._splits import (DatasetSplit, TensorImageDataset, _check_count, _check_seed, _make_split,
                      _stratified_split)
from .animals import ANIMAL_MNIST_CLASSES, animal_mnist

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


# --- loaders in their own modules (imported last; they import nothing from here) ----------

from .containers import (  # noqa: E402
    PairSplit, SegmentationSplit, TensorPairDataset, TensorSegmentationDataset)
from .nuclei import NUCLEI_CLASSES, nuclei  # noqa: E402
from .scenes import ANIMAL_SCENES_CLASSES, animal_scenes  # noqa: E402
from .photos import bicubic_degrade, colorization, luminance, super_resolution  # noqa: E402
