"""Real fluorescence microscopy of cell nuclei with ground-truth masks, as segmentation tiles."""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_int
from ..errors import DataError
from ._packaged import package_file
from .containers import SegmentationSplit, TensorSegmentationDataset

__all__ = ["nuclei", "NUCLEI_CLASSES"]

NUCLEI_CLASSES = ("background", "nucleus")
_SIZE = 512  # the image is 512 x 512; columns [0, 256) train, [256, 512) test
_HALF = _SIZE // 2
_PERCENTILES = (1.0, 99.8)  # stardist's own normalisation of this image



def _read_tifs(fn: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    arrays = []
    for name in ("img2d.tif", "mask2d.tif"):
        with Image.open(package_file("stardist", f"data/images/{name}", fn)) as im:
            arrays.append(np.asarray(im))  # 16-bit greyscale ("I;16")
    image, labels = arrays
    if image.shape != (_SIZE, _SIZE) or labels.shape != (_SIZE, _SIZE):
        raise DataError(f"{fn}: stardist's img2d.tif / mask2d.tif are {image.shape} / "
                        f"{labels.shape}, expected ({_SIZE}, {_SIZE}). Fix: pip install "
                        f"--no-deps --force-reinstall stardist==0.9.2")
    return image, labels


def _grid(x_lo: int, x_hi: int, tile: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the tiles that lie wholly inside rows [0, 512), columns [x_lo, x_hi)."""
    return [(y, x) for y in range(0, _SIZE - tile + 1, stride)
            for x in range(x_lo, x_hi - tile + 1, stride)]


def _tiles(image: np.ndarray, fg: np.ndarray, corners: list[tuple[int, int]], tile: int,
           channels: int, classes: tuple[str, ...]) -> TensorSegmentationDataset:
    x = np.stack([image[y:y + tile, c:c + tile] for y, c in corners])  # (N, tile, tile)
    m = np.stack([fg[y:y + tile, c:c + tile] for y, c in corners])
    data = torch.from_numpy(x).unsqueeze(1).expand(-1, channels, -1, -1).contiguous()
    regions = torch.tensor([(y, c, y + tile, c + tile) for y, c in corners], dtype=torch.int64)
    return TensorSegmentationDataset(data, torch.from_numpy(m.astype(np.int64)), classes,
                                     regions=regions)


def nuclei(*, tile: int = 64, stride: int | None = None, channels: int = 1) -> SegmentationSplit:
    """Cell nuclei vs background: tiles of a real fluorescence image with its true masks.

    The data is the 2-D example of StarDist (Schmidt et al., MICCAI 2018): a 512 x 512
    fluorescence microscopy image of cell nuclei (from the DSB 2018 training data) and its
    hand-drawn instance labels (125 nuclei), shipped as ``stardist/data/images/img2d.tif`` and
    ``mask2d.tif`` in the PyPI package ``stardist==0.9.2``. Install it with
    ``pip install --no-deps stardist==0.9.2``; the two tifs are read with PIL, stardist is
    never imported (it would need TensorFlow).

    How it is made: instance labels > 0 become class 1 ("nucleus"), 0 stays 0 ("background")
    (about 20% of the pixels are nucleus). Intensities are scaled to [0, 1] by stardist's
    usual percentile normalisation, ``(x - p1) / (p99.8 - p1)`` clipped to [0, 1], with both
    percentiles taken over the training half only. **Spatial split:** training tiles come from
    columns 0-255 (the left half), test tiles from columns 256-511 (the right half), so no test
    pixel is ever in a training tile (the five nuclei that straddle column 256 are cut in two).
    Test tiles are a non-overlapping ``tile`` x ``tile`` grid over the right half; training
    tiles a grid with step ``stride`` over the left half. Fully deterministic: there is no seed.

    Args:
        tile: tile side in pixels, 16..256 (with 64: 32 training and 32 test tiles; with 128:
            8 and 8).
        stride: step between training tiles; smaller than ``tile`` gives overlapping training
            tiles (more of them; with tile=64, stride=32: 105). Default: ``tile``.
        channels: 1 (greyscale, the engine repeats it to RGB for an ImageNet encoder) or 3
            (the grey value repeated here).

    Returns:
        ``SegmentationSplit(train, test, classes)``: two :class:`TensorSegmentationDataset`,
        ``.data`` float32 (N, channels, tile, tile) in [0, 1], ``.targets`` int64
        (N, tile, tile) in {0, 1}, ``.regions`` int64 (N, 4) = (y0, x0, y1, x1), the tile's box
        in the 512 x 512 image; ``classes`` = ("background", "nucleus").

    Example:
        >>> train, test, classes = nuclei(tile=128)
        >>> tuple(train.data.shape), tuple(test.targets.shape), classes[1]
        ((8, 1, 128, 128), (8, 128, 128), 'nucleus')
    """
    fn = "nuclei"
    tile = check_int(fn, "tile", tile, 16, _HALF)
    stride = tile if stride is None else check_int(fn, "stride", stride, 1, tile)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"{fn}: channels must be 1 or 3, got {channels!r}.")
    raw, labels = _read_tifs(fn)
    lo, hi = np.percentile(raw[:, :_HALF], _PERCENTILES)
    scaled = (raw.astype(np.float32) - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))
    image = np.clip(scaled, 0.0, 1.0)
    fg = labels > 0
    train = _tiles(image, fg, _grid(0, _HALF, tile, stride), tile, channels, NUCLEI_CLASSES)
    test = _tiles(image, fg, _grid(_HALF, _SIZE, tile, tile), tile, channels, NUCLEI_CLASSES)
    return SegmentationSplit(train, test, NUCLEI_CLASSES)
