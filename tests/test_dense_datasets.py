"""The dense-task loaders: nuclei, animal_scenes, super_resolution, colorization.

Each test skips (with the pip command) when the package holding its real data is missing.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from transferkit.datasets import nuclei
from transferkit.errors import DataError


def _need(package: str, requirement: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs {requirement}: pip install --no-deps {requirement}")


def _boxes_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) bool: do boxes (y0, x0, y1, x1) share a pixel."""
    a, b = a[:, None, :], b[None, :, :]
    return ((a[..., 0] < b[..., 2]) & (b[..., 0] < a[..., 2])
            & (a[..., 1] < b[..., 3]) & (b[..., 1] < a[..., 3]))


# --- nuclei ---------------------------------------------------------------------------------

def _stardist_tifs() -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    folder = importlib.util.find_spec("stardist").submodule_search_locations[0]
    return tuple(np.asarray(Image.open(f"{folder}/data/images/{n}"))
                 for n in ("img2d.tif", "mask2d.tif"))


def test_nuclei_shapes_ranges_and_masks_match_the_tif():
    _need("stardist", "stardist==0.9.2")
    raw, labels = _stardist_tifs()
    assert len(np.unique(labels)) - 1 == 125  # 125 nuclei, as the package says
    train, test, classes = nuclei(tile=64)
    assert classes == ("background", "nucleus")
    assert train.data.shape == (32, 1, 64, 64) and test.data.shape == (32, 1, 64, 64)
    for ds in (train, test):
        assert ds.data.dtype == torch.float32 and ds.targets.dtype == torch.int64
        assert float(ds.data.min()) >= 0.0 and float(ds.data.max()) <= 1.0
        assert set(ds.targets.unique().tolist()) == {0, 1}
        for (y0, x0, y1, x1), mask, image in zip(ds.regions.tolist(), ds.targets, ds.data):
            np.testing.assert_array_equal(mask.numpy(), labels[y0:y1, x0:x1] > 0)
            # brighter pixels stay brighter: the scaling is monotone in the raw intensities
            crop = raw[y0:y1, x0:x1].astype(np.float64)
            inside = (image[0].numpy() > 0) & (image[0].numpy() < 1)
            if inside.sum() > 2:
                assert np.corrcoef(crop[inside], image[0].numpy()[inside])[0, 1] > 0.999
    fractions = [float(ds.targets.float().mean()) for ds in (train, test)]
    assert all(0.1 < f < 0.35 for f in fractions), fractions  # about 20% nucleus overall


def test_nuclei_spatial_split_is_disjoint_and_deterministic():
    _need("stardist", "stardist==0.9.2")
    train, test, _ = nuclei(tile=64, stride=32, channels=3)
    assert train.data.shape[1] == 3 and torch.equal(train.data[:, 0], train.data[:, 2])
    assert len(train) == 15 * 7 and len(test) == 32
    assert int(train.regions[:, 3].max()) <= 256 and int(test.regions[:, 1].min()) >= 256
    assert not _boxes_overlap(train.regions, test.regions).any()
    assert not _boxes_overlap(test.regions, test.regions).fill_diagonal_(False).any()
    again = nuclei(tile=64, stride=32, channels=3)
    assert torch.equal(again.train.data, train.data) and torch.equal(again.test.targets,
                                                                     test.targets)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(tile=8), ValueError, "tile must be between 16 and 256, got 8"),
    (dict(tile=300), ValueError, "tile must be between 16 and 256"),
    (dict(tile=64.0), TypeError, "tile must be an int, got float"),
    (dict(tile=64, stride=65), ValueError, "stride must be between 1 and 64"),
    (dict(channels=2), ValueError, "channels must be 1 or 3, got 2"),
])
def test_nuclei_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        nuclei(**kwargs)


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "stardist" else real(name, *a))
    with pytest.raises(DataError, match=r"pip install --no-deps stardist==0\.9\.2"):
        nuclei()


# --- animal_scenes --------------------------------------------------------------------------

def _need_scenes() -> None:
    _need("foolbox", "foolbox==3.3.4")
    _need("animal_mnist", "animal-mnist==0.4")


def test_animal_scenes_shapes_classes_and_split():
    _need_scenes()
    from transferkit.datasets import ANIMAL_SCENES_CLASSES, animal_scenes
    from transferkit.datasets.scenes import SCENE_PHOTOS

    train, test, classes = animal_scenes(n=300, n_test=100, size=64)
    assert classes == ANIMAL_SCENES_CLASSES and len(classes) == 11 and classes[7] == "giraffe"
    assert train.data.shape == (300, 3, 64, 64) and test.targets.shape == (100, 64, 64)
    for ds in (train, test):
        assert ds.data.dtype == torch.float32 and ds.targets.dtype == torch.int64
        assert 0.0 <= float(ds.data.min()) and float(ds.data.max()) <= 1.0
        assert float(ds.data.std()) > 0.1  # photographs, not flat colour
    counts = torch.bincount(train.targets.flatten(), minlength=11)
    assert (counts > 0).all() and len(counts) == 11, counts  # every class, none beyond 10
    assert 0.6 < counts[0] / counts.sum() < 0.95  # mostly background, animals visible
    assert (torch.bincount(test.targets.flatten(), minlength=11) > 0).all()
    # every scene's labels are those of the animals it records; disjoint photos per split
    for ds, split in ((train, "train"), (test, "test")):
        used = set()
        for mask, src in zip(ds.targets, ds.sources):
            labels = set(mask.unique().tolist()) - {0}
            assert labels <= {classes.index(a[0]) for a in src["animals"]}
            assert all(a[2] != src["background"] for a in src["animals"])
            used |= {src["background"], *(a[2] for a in src["animals"])}
        assert used <= set(SCENE_PHOTOS[split])
    assert not set(SCENE_PHOTOS["train"]) & set(SCENE_PHOTOS["test"])


def test_animal_scenes_deterministic_by_seed_and_test_set_fixed():
    _need_scenes()
    from transferkit.datasets import animal_scenes

    a = animal_scenes(n=20, n_test=10, size=48, seed=3)
    b = animal_scenes(n=20, n_test=10, size=48, seed=3)
    c = animal_scenes(n=20, n_test=10, size=48, seed=4)
    assert torch.equal(a.train.data, b.train.data) and torch.equal(a.train.targets,
                                                                   b.train.targets)
    assert not torch.equal(a.train.data, c.train.data)
    assert torch.equal(a.test.data, c.test.data)  # the test set depends on test_seed only
    d = animal_scenes(n=20, n_test=10, size=48, seed=3, test_seed=1)
    assert not torch.equal(a.test.targets, d.test.targets)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=0), ValueError, "n must be >= 1, got 0"),
    (dict(size=16), ValueError, "size must be between 32 and 512, got 16"),
    (dict(size="64"), TypeError, "size must be an int, got str"),
    (dict(max_animals=9), ValueError, "max_animals must be between 1 and 5"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
])
def test_animal_scenes_bad_arguments(kwargs, error, match):
    from transferkit.datasets import animal_scenes

    with pytest.raises(error, match=match):
        animal_scenes(**kwargs)
