"""Offline datasets: sizes, class names, value range, per-class subsets, seeds and errors.

Fashion-MNIST is tested on small idx files the tests write; the real files are checked too
where Debian's dataset-fashion-mnist is installed. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit import datasets
from transferkit.datasets import animals as animals_module
from transferkit.datasets import (
    ANIMAL_MNIST_CLASSES,
    FASHION_MNIST_CLASSES,
    DatasetSplit,
    TensorImageDataset,
    animal_mnist,
    digits,
    fashion_mnist,
)
from transferkit.errors import DataError

needs_animal = pytest.mark.skipif(
    importlib.util.find_spec("animal_mnist") is None,
    reason="animal-mnist is not installed (pip install --no-deps animal-mnist==0.4)",
)


def _check_images(ds: TensorImageDataset, side: int) -> None:
    assert ds.data.dtype == torch.float32 and ds.targets.dtype == torch.int64
    assert ds.data.shape[1:] == (1, side, side)
    assert float(ds.data.min()) >= 0.0 and float(ds.data.max()) <= 1.0
    image, label = ds[0]
    assert image.shape == (1, side, side) and isinstance(label, int)


# --- Animal-MNIST ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def animals() -> DatasetSplit:
    if importlib.util.find_spec("animal_mnist") is None:
        pytest.skip("animal-mnist is not installed")
    return animal_mnist()


def test_animal_mnist_sizes_classes_and_range(animals: DatasetSplit) -> None:
    train, test, classes = animals
    assert classes == ANIMAL_MNIST_CLASSES == train.classes == test.classes
    assert classes[0] == "bear" and classes[9] == "zebra" and len(classes) == 10
    assert (len(train), len(test)) == (8000, 2000)
    assert train.targets.bincount().tolist() == [800] * 10
    assert test.targets.bincount().tolist() == [200] * 10
    _check_images(train, 28)
    _check_images(test, 28)
    assert float(train.data.max()) == 1.0  # scaled by 255, not by the batch maximum


def test_animal_mnist_does_not_import_the_package_loader(animals: DatasetSplit) -> None:
    import sys

    assert "animal_mnist.dataset_Loader" not in sys.modules
    assert "tensorflow" not in sys.modules


@needs_animal
def test_animal_mnist_per_class_subsets_are_stratified_and_seeded(animals: DatasetSplit) -> None:
    a = animal_mnist(n_per_class=7, seed=1)
    b = animal_mnist(n_per_class=7, seed=1)
    c = animal_mnist(n_per_class=7, seed=2)
    assert len(a.train) == 70 and a.train.targets.bincount().tolist() == [7] * 10
    assert torch.equal(a.train.data, b.train.data) and torch.equal(a.train.targets, b.train.targets)
    assert not torch.equal(a.train.data, c.train.data)
    # the test set is whole, and the same for every seed
    assert torch.equal(a.test.data, animals.test.data) and torch.equal(c.test.data, a.test.data)
    small = animal_mnist(n_per_class_test=3)
    assert len(small.train) == 8000 and small.test.targets.bincount().tolist() == [3] * 10


@needs_animal
def test_animal_mnist_split_seed_changes_the_split(animals: DatasetSplit) -> None:
    other = animal_mnist(split_seed=1, n_per_class_test=200)
    assert not torch.equal(other.test.data, animals.test.data)
    assert other.test.targets.bincount().tolist() == [200] * 10


@needs_animal
def test_animal_mnist_too_many_per_class() -> None:
    with pytest.raises(DataError, match=r"n_per_class=801 but the training set has only 800 "
                       r"images of class 'bear'.*use n_per_class <= 800"):
        animal_mnist(n_per_class=801)
    with pytest.raises(DataError, match=r"n_per_class_test=201 .* only 200 images"):
        animal_mnist(n_per_class_test=201)


def test_numpy_only_unpickler_round_trips_arrays(tmp_path: Path) -> None:
    path = tmp_path / "a.gz"
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    with gzip.open(path, "wb") as f:
        pickle.dump(array, f, protocol=4)
    np.testing.assert_array_equal(animals_module._load_numpy_pickle(path), array)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo pwned",))


def test_numpy_only_unpickler_refuses_other_globals(tmp_path: Path) -> None:
    path = tmp_path / "evil.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(DataError, match=r"refusing to load (posix|nt|os)\.system"):
        animals_module._load_numpy_pickle(path)


# --- Fashion-MNIST --------------------------------------------------------------------------

def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_fashion(folder: Path, n_train: int = 4, n_test: int = 2, gz: bool = True) -> None:
    """Write tiny Fashion-MNIST idx files: n images per class, pixel value = label * 25."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        labels = np.repeat(np.arange(10), n)
        images = np.broadcast_to((labels * 25)[:, None, None], (10 * n, 28, 28))
        _write_idx(folder / f"{stem}-images-idx3-ubyte{ext}", images)
        _write_idx(folder / f"{stem}-labels-idx1-ubyte{ext}", labels)


@pytest.fixture
def no_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-here")


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_fashion_mnist_from_root(tmp_path: Path, no_debian: None, gz: bool) -> None:
    _fake_fashion(tmp_path / "fm", gz=gz)
    train, test, classes = fashion_mnist(tmp_path / "fm")
    assert classes == FASHION_MNIST_CLASSES and classes[9] == "Ankle boot"
    assert (len(train), len(test)) == (40, 20)
    _check_images(train, 28)
    # pixel value label * 25 / 255 shows images and labels stay paired
    expected = train.targets.float() * 25 / 255
    torch.testing.assert_close(train.data[:, 0, 0, 0], expected)


def test_fashion_mnist_torchvision_layout(tmp_path: Path, no_debian: None) -> None:
    _fake_fashion(tmp_path / "FashionMNIST" / "raw", gz=False)
    assert len(fashion_mnist(str(tmp_path)).train) == 40


def test_fashion_mnist_falls_back_to_the_debian_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_fashion(tmp_path / "debian")
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    assert len(fashion_mnist().test) == 20
    assert len(fashion_mnist(tmp_path / "empty").test) == 20


def test_fashion_mnist_subsets(tmp_path: Path, no_debian: None) -> None:
    _fake_fashion(tmp_path, n_train=5, n_test=3)
    a = fashion_mnist(tmp_path, n_per_class=2, n_per_class_test=1, seed=3)
    b = fashion_mnist(tmp_path, n_per_class=2, n_per_class_test=1, seed=3)
    assert a.train.targets.bincount().tolist() == [2] * 10
    assert a.test.targets.bincount().tolist() == [1] * 10
    assert torch.equal(a.train.targets, b.train.targets)
    with pytest.raises(DataError, match=r"n_per_class=6 but the training set has only 5 images"):
        fashion_mnist(tmp_path, n_per_class=6)


def test_fashion_mnist_missing_names_the_three_fixes(tmp_path: Path, no_debian: None) -> None:
    with pytest.raises(DataError) as info:
        fashion_mnist(tmp_path)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "root=..." in message and "download=True" in message
    assert str(tmp_path) in message and "no-debian-here" in message


def test_fashion_mnist_rejects_a_bad_idx_file(tmp_path: Path, no_debian: None) -> None:
    _fake_fashion(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03abcd"))
    with pytest.raises(DataError, match=r"is not an idx file of 1-d unsigned bytes"):
        fashion_mnist(tmp_path)


def test_fashion_mnist_rejects_a_truncated_idx_file(tmp_path: Path, no_debian: None) -> None:
    _fake_fashion(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"is truncated: its header says \(20, 28, 28\)"):
        fashion_mnist(tmp_path)


def test_fashion_mnist_download_must_be_bool(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="download must be a bool, got 'yes'"):
        fashion_mnist(tmp_path, download="yes")  # type: ignore[arg-type]


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_real_debian_files() -> None:
    train, test, _ = fashion_mnist(n_per_class=10)
    assert len(train) == 100 and len(test) == 10000
    assert test.targets.bincount().tolist() == [1000] * 10
    _check_images(test, 28)


# --- digits ---------------------------------------------------------------------------------

def test_digits_sizes_classes_and_range() -> None:
    train, test, classes = digits()
    assert classes == tuple("0123456789")
    assert (len(train), len(test)) == (1347, 450)
    _check_images(train, 8)
    assert float(train.data.max()) == 1.0
    assert min(train.targets.bincount().tolist()) == 131
    assert min(test.targets.bincount().tolist()) == 43


def test_digits_subsets_and_seeds() -> None:
    a, b = digits(n_per_class=131, seed=0), digits(n_per_class=131, seed=0)
    assert a.train.targets.bincount().tolist() == [131] * 10 and len(a.test) == 450
    assert torch.equal(a.train.data, b.train.data)
    assert not torch.equal(digits(n_per_class=3, seed=0).train.data,
                           digits(n_per_class=3, seed=1).train.data)
    with pytest.raises(DataError, match=r"n_per_class=132 but the training set has only 131 "
                       r"images of class '8'"):
        digits(n_per_class=132)


# --- argument checks, shared by all three -------------------------------------------------

_BAD_ARGUMENTS = [
    ({"n_per_class": 0}, ValueError, r"digits: n_per_class must be an int >= 1 or None, got 0\."),
    ({"n_per_class": -2}, ValueError, r"n_per_class must be an int >= 1 or None, got -2"),
    ({"n_per_class": 2.5}, TypeError, r"n_per_class must be an int >= 1 or None, got float 2\.5"),
    ({"n_per_class": True}, TypeError, r"n_per_class must be an int .* got bool True"),
    ({"n_per_class_test": 0}, ValueError, r"n_per_class_test must be an int >= 1 or None, got 0"),
    ({"seed": -1}, ValueError, r"digits: seed must be an int >= 0, got -1\."),
    ({"seed": "1"}, TypeError, r"seed must be an int >= 0, got str '1'"),
    ({"split_seed": 1.0}, TypeError, r"split_seed must be an int >= 0, got float"),
]


@pytest.mark.parametrize(("kwargs", "error", "pattern"), _BAD_ARGUMENTS,
                         ids=[f"{k}={v!r}" for (case, _, _) in _BAD_ARGUMENTS
                              for k, v in case.items()])
def test_bad_arguments(kwargs: dict, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        digits(**kwargs)


def test_tensor_image_dataset_checks_its_tensors() -> None:
    with pytest.raises(DataError, match=r"data must be a \(N, C, H, W\) float32 tensor, got "
                       r"torch\.uint8"):
        TensorImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2).long(), ())
    with pytest.raises(DataError, match=r"targets must be a \(2,\) int64 tensor, got torch\.int64 "
                       r"\(3,\)"):
        TensorImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(3).long(), ())
