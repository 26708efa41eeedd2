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
    (dict(tile=8), ValueError, r"tile must be an int in \[16, 256\], got 8"),
    (dict(tile=300), ValueError, r"tile must be an int in \[16, 256\]"),
    (dict(tile=64.0), TypeError, r"tile must be an int in \[16, 256\], got 64.0 \(float\)"),
    (dict(tile=64, stride=65), ValueError, r"stride must be an int in \[1, 64\]"),
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


def test_animal_scenes_scale_and_contrast_options_do_what_they_say():
    _need_scenes()
    from transferkit.datasets import animal_scenes

    # scale: one animal per scene, its mask's longer side within the asked fraction of the side
    big = animal_scenes(n=30, n_test=1, size=64, max_animals=1, scale=(0.8, 0.9)).train
    for mask in big.targets:
        rows, cols = (mask > 0).any(1).nonzero(), (mask > 0).any(0).nonzero()
        long_side = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
        assert 0.8 * 64 - 3 <= long_side <= 0.9 * 64 + 1, long_side

    # contrast: the fill's mean colour stands further off the rest of the scene
    def spread(contrast: float) -> float:
        ds = animal_scenes(n=40, n_test=1, size=48, max_animals=1, contrast=contrast,
                           outline=0, background_blur=0.0, background_contrast=1.0).train
        fg = (ds.targets > 0)[:, None]  # (N, 1, H, W)
        mean_in = (ds.data * fg).sum((2, 3)) / fg.sum((2, 3))
        mean_out = (ds.data * ~fg).sum((2, 3)) / (~fg).sum((2, 3))
        return float((mean_in - mean_out).norm(dim=1).median())

    assert spread(0.5) > spread(0.0) + 0.05
    same = [animal_scenes(n=6, n_test=2, size=32, scale=(0.5, 0.9), contrast=0.3,
                          texture_scale=(0.03, 0.1)) for _ in range(2)]
    assert torch.equal(same[0].train.data, same[1].train.data)
    assert torch.equal(same[0].test.targets, same[1].test.targets)


def test_animal_scenes_outline_and_background_options_do_what_they_say():
    _need_scenes()
    from transferkit.datasets import animal_scenes

    def scenes(**kw):
        return animal_scenes(n=24, n_test=1, size=64, max_animals=1, **kw).train

    # outline: the mask's rim (pixels with a background 4-neighbour) is drawn black, the
    # inside is not; without it the rim is as bright as the rest of the fill
    def rim_and_inside(ds):
        fg = ds.targets > 0
        padded = torch.nn.functional.pad(fg, (1, 1, 1, 1))
        inner = fg & padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] \
            & padded[:, 1:-1, 2:]
        rim = fg & ~inner
        grey = ds.data.mean(1)
        return float(grey[rim].mean()), float(grey[inner].mean())

    rim, inside = rim_and_inside(scenes(outline=2))
    assert rim < 0.01 and inside > 0.1, (rim, inside)
    rim0, inside0 = rim_and_inside(scenes(outline=0))
    assert rim0 > 0.1, rim0

    # background_blur / background_contrast: the background's neighbour differences and its
    # spread about its mean shrink; the animals' pixels are not touched by either
    def background_stats(ds):
        bg = (ds.targets == 0)
        x = ds.data
        dx = (x[..., 1:] - x[..., :-1]).abs().mean(1)[bg[..., 1:] & bg[..., :-1]]
        spread = [float(img[:, m].std(1).mean()) for img, m in zip(x, bg)]
        return float(dx.mean()), sum(spread) / len(spread)

    sharp_dx, full_spread = background_stats(scenes(background_blur=0.0, background_contrast=1.0))
    blur_dx, _ = background_stats(scenes(background_blur=0.0625, background_contrast=1.0))
    _, half_spread = background_stats(scenes(background_blur=0.0, background_contrast=0.5))
    assert blur_dx < 0.6 * sharp_dx, (blur_dx, sharp_dx)
    assert 0.35 * full_spread < half_spread < 0.65 * full_spread, (half_spread, full_spread)
    # (contrast=0: one fill per animal, so both draw the same random numbers)
    plain = scenes(outline=0, contrast=0.0, background_blur=0.0, background_contrast=1.0)
    styled = scenes(outline=0, contrast=0.0)
    fg = plain.targets > 0
    assert torch.equal(plain.targets, styled.targets)  # same draws: same masks
    assert not torch.equal(plain.data, styled.data)
    assert torch.equal(plain.data.permute(1, 0, 2, 3)[:, fg], styled.data.permute(1, 0, 2, 3)[:, fg])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=0), ValueError, "n must be an int >= 1, got 0"),
    (dict(outline=-1), ValueError, r"outline must be an int in \[0, 8\], got -1"),
    (dict(outline=1.5), TypeError, r"outline must be an int in \[0, 8\], got 1.5 \(float\)"),
    (dict(background_blur=0.9), ValueError, r"background_blur must be a finite number in \[0.0, 0.5\], got 0.9"),
    (dict(background_contrast=1.5), ValueError,
     r"background_contrast must be a finite number in \[0.0, 1.0\], got 1.5"),
    (dict(size=16), ValueError, r"size must be an int in \[32, 512\], got 16"),
    (dict(size="64"), TypeError, r"size must be an int in \[32, 512\], got '64' \(str\)"),
    (dict(max_animals=9), ValueError, r"max_animals must be an int in \[1, 5\]"),
    (dict(seed=-1), ValueError, "seed must be an int >= 0"),
    (dict(scale=0.5), TypeError, r"scale must be a pair \(low, high\) of numbers, got 0.5"),
    (dict(scale=(0.9, 0.5)), ValueError, r"scale must satisfy 0.1 <= low <= high <= 1.0"),
    (dict(texture_scale=(0.0, 0.5)), ValueError, r"texture_scale must be a finite number in \[0.02, 1.0\], got 0.0"),
    (dict(contrast=2.0), ValueError, r"contrast must be a finite number in \[0.0, 1.0\], got 2.0"),
    (dict(contrast="high"), TypeError, r"contrast must be a number in \[0.0, 1.0\], got 'high' \(str\)"),
])
def test_animal_scenes_bad_arguments(kwargs, error, match):
    from transferkit.datasets import animal_scenes

    with pytest.raises(error, match=match):
        animal_scenes(**kwargs)


# --- super_resolution, colorization ---------------------------------------------------------

_ALL = ("aerial", "imagenet", "sklearn")


def _need_photos() -> None:
    _need("deepforest", "deepforest==2.1.0")
    _need("foolbox", "foolbox==3.3.4")


def _check_pairs(split, size: int) -> None:
    for ds in split:
        assert ds.data.dtype == torch.float32 and ds.targets.dtype == torch.float32
        assert ds.targets.shape[1:] == (3, size, size)
        for t in (ds.data, ds.targets):
            assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0


def _check_spatial_split(train, test, names: tuple[str, ...]) -> None:
    from transferkit.datasets._packaged import photo_paths, read_rgb

    assert train.sources == test.sources == names
    sets = tuple(dict.fromkeys(n.split("/")[0] for n in names))
    photos = [read_rgb(p) for _, p in photo_paths(sets, "test")]
    # the targets are exactly the recorded regions of the photos
    for ds in (train, test):
        for (i, y0, x0, y1, x1), target in zip(ds.regions.tolist(), ds.targets):
            expect = torch.from_numpy(photos[i][y0:y1, x0:x1].copy()).permute(2, 0, 1) / 255
            torch.testing.assert_close(target, expect, rtol=0, atol=1e-6)
    # no training crop touches a test crop of the same photo, and test crops do not overlap
    same = train.regions[:, None, 0] == test.regions[None, :, 0]
    assert not (same & _boxes_overlap(train.regions[:, 1:], test.regions[:, 1:])).any()
    tt = (test.regions[:, None, 0] == test.regions[None, :, 0]) & _boxes_overlap(
        test.regions[:, 1:], test.regions[:, 1:])
    assert not tt.fill_diagonal_(False).any()


def test_super_resolution_pairs_and_split():
    _need_photos()
    import torch.nn.functional as F

    from transferkit.datasets import super_resolution

    train, test = super_resolution(scale=4, size=64, n=96, n_test=56, seed=1, sources=_ALL)
    _check_pairs((train, test), 64)
    assert train.data.shape == (96, 3, 64, 64) and test.data.shape == (56, 3, 64, 64)
    assert len(set(test.regions[:, 0].tolist())) == 28  # every photo has test crops
    _check_spatial_split(train, test, train.sources)
    # the input is the bicubic downsample of the target, bicubically upsampled back
    low = F.interpolate(test.targets.double(), scale_factor=0.25, mode="bicubic",
                        antialias=True).clamp(0, 1)
    up = F.interpolate(low, size=(64, 64), mode="bicubic").clamp(0, 1)
    torch.testing.assert_close(test.data.double(), up, rtol=0, atol=1e-5)
    assert float((test.data - test.targets).abs().mean()) > 0.005  # it did lose detail
    small, _ = super_resolution(scale=4, size=64, n=96, n_test=56, seed=1, sources=_ALL,
                                upsample=False)
    torch.testing.assert_close(small.data.double(), F.interpolate(
        train.targets.double(), scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1),
        rtol=0, atol=1e-5)
    again, other = (super_resolution(size=64, n=96, n_test=56, seed=s, sources=_ALL)
                    for s in (1, 2))
    assert torch.equal(again.train.targets, train.targets)
    assert not torch.equal(other.train.targets, train.targets)
    assert torch.equal(other.test.targets, test.targets)  # the test set ignores seed


def test_colorization_pairs_and_split():
    _need_photos()
    from transferkit.datasets import colorization

    train, test = colorization(size=48, n=64, n_test=40, sources=_ALL)
    _check_pairs((train, test), 48)
    _check_spatial_split(train, test, train.sources)
    for ds in (train, test):
        assert torch.equal(ds.data[:, 0], ds.data[:, 1]) and torch.equal(ds.data[:, 1],
                                                                         ds.data[:, 2])
        r, g, b = ds.targets.double().unbind(1)
        torch.testing.assert_close(ds.data[:, 0].double(), 0.299 * r + 0.587 * g + 0.114 * b,
                                   rtol=0, atol=1e-6)
    # real colour photographs: the targets are not grey
    assert float((test.targets - test.data).abs().mean()) > 0.01


def test_pairs_from_sklearn_photos_alone():  # scikit-learn is always installed
    from transferkit.datasets import colorization, super_resolution

    train, test = super_resolution(scale=2, size=32, n=5, n_test=7, sources=("sklearn",))
    assert train.data.shape == (5, 3, 32, 32) and test.regions.shape == (7, 5)
    assert train.sources == ("sklearn/china.jpg", "sklearn/flower.jpg")
    assert int(test.regions[:, 2].min()) >= 640 - 160  # the rightmost quarter of 640 columns
    assert int(train.regions[:, 4].max()) <= 640 - 160
    assert colorization(size=32, n=3, n_test=2, sources=["sklearn"]).test.data.shape[0] == 2


@pytest.mark.parametrize("call, error, match", [
    (dict(scale=4, size=30), ValueError, "size=30 must be divisible by scale=4; try size=28"),
    (dict(scale=1), ValueError, r"scale must be an int in \[2, 8\], got 1"),
    (dict(size=8), ValueError, r"size must be an int in \[16, 512\]"),
    (dict(n_test=10**6, sources=("sklearn",)), ValueError, r"n_test=1000000 but the test "
     r"regions hold only \d+ non-overlapping 64x64 crops; use n_test <= \d+"),
    (dict(sources=("sklearn", "mars")), ValueError, "unknown photo set 'mars'"),
    (dict(sources="sklearn"), TypeError, "sources must be a non-empty tuple"),
    (dict(sources=("sklearn", "sklearn")), ValueError, "lists a photo set twice"),
    (dict(size=512, sources=("sklearn",)), ValueError, "size=512 is too large for every photo"),
    (dict(upsample=1), TypeError, "upsample must be a bool"),
])
def test_super_resolution_bad_arguments(call, error, match):
    from transferkit.datasets import super_resolution

    with pytest.raises(error, match=match):
        super_resolution(**call)


def test_degradations_reject_bad_images():
    from transferkit.datasets import bicubic_degrade, luminance

    with pytest.raises(ValueError, match="33x32 must be divisible by scale=4"):
        bicubic_degrade(torch.rand(1, 3, 33, 32), 4)
    with pytest.raises(TypeError, match=r"float \(N, 3, H, W\) tensor"):
        luminance(torch.rand(1, 1, 8, 8))


def test_missing_photo_package_names_the_pip_command(monkeypatch):
    from transferkit.datasets import colorization

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "deepforest" else real(name, *a))
    with pytest.raises(DataError, match=r"pip install --no-deps deepforest==2\.1\.0"):
        colorization(sources=("aerial",))
