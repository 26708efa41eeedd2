"""Images decoded once: an image folder or a dataset of PIL images becomes one ``uint8`` tensor.

Decoding a JPEG and resizing it costs more than a lite0 training step spends on it at 64 px, and
the samples path (:func:`~transferkit.data.preprocess.sample_transform` per image, in DataLoader
workers) pays that in every epoch. :func:`decode_once` pays it once: each image is decoded,
its shorter side resized to the pre-crop size (the ``data_config``'s ``resize_size``, at least
the crop size) and centre-cropped square, kept as ``uint8`` ``(N, C, S, S)`` in memory within a
budget (a temporary disk memmap beyond it). The result is a tensor :class:`Source`, so the rest
of the one preprocessing description (centre crop, or random resized crop + flip, then
normalisation) runs on batches by :class:`~transferkit.data.preprocess.BatchPrep`.

What changes against the samples path: evaluation geometry is the same (resize the shorter side
to ``resize_size``, centre crop) up to the ``uint8`` rounding of the resized image (at most
half a grey level); a training random resized crop is drawn from the centre square at
``resize_size`` rather than from the whole image at full resolution.

JPEG files are decoded by ``torchvision.io.decode_image`` (EXIF orientation applied) when
:data:`JPEG_DECODER` says so (``benchmarks/decode_once.py`` decides it); every other file and
every dataset item goes through the dataset's own loader (PIL, by the decoding rule of
:func:`~transferkit.data.preprocess.pil_pixels`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .._io import allocate_store
from .._log import progress_bar
from ..backbones import DataConfig

__all__ = ["DEFAULT_DECODE_BUDGET", "JPEG_DECODER", "decode_once", "decodable", "precrop_size"]

#: Bytes of decoded images kept in memory before they go to a disk memmap.
DEFAULT_DECODE_BUDGET = 2 * 2**30
#: ``"torchvision"`` (``torchvision.io.decode_image``) or ``"pil"`` for JPEG files: the faster
#: one by ``benchmarks/decode_once.py`` (figures in docs/benchmarks.md, "Data decoded once").
JPEG_DECODER = "torchvision"
_JPEG = (".jpg", ".jpeg")


def precrop_size(config: DataConfig) -> int:
    """The side ``S`` images are stored at: the resize size, at least the crop size."""
    return max(int(config.resize_size), int(config.crop_size))


def decodable(source: Any, custom_transform: bool) -> bool:
    """Whether ``source`` is read sample by sample from images that :func:`decode_once` can
    hold: a samples source of an image folder or of a dataset whose items are PIL images,
    with transferkit's own preprocessing (no custom ``transform``)."""
    if custom_transform or getattr(source, "kind", None) != "samples":
        return False
    if getattr(source.transform, "paired", False):  # dense (image, mask) pairs: data/dense.py
        return False
    ds = source.dataset
    if hasattr(ds, "samples") and hasattr(ds, "loader"):
        return True
    try:
        from PIL import Image

        return isinstance(ds[0][0], Image.Image)
    except Exception:  # an item that cannot be read here fails later, where it is read
        return False


class _Decode(Dataset):
    """Item ``i``: the image ``(C, S, S)`` uint8, resized and centre-cropped; its target."""

    def __init__(self, dataset: Dataset, size: int, crop: int, in_chans: int,
                 interpolation: str) -> None:
        self.dataset, self.size, self.crop, self.in_chans = dataset, size, crop, in_chans
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _read(self, i: int) -> tuple[Tensor, Any]:
        from torchvision.transforms.v2 import functional as TF

        ds = self.dataset
        samples = getattr(ds, "samples", None)
        if samples is not None:
            path, target = samples[i]
            if JPEG_DECODER == "torchvision" and str(path).lower().endswith(_JPEG):
                try:
                    return _decode_jpeg(path, self.in_chans), target
                except RuntimeError:  # not what its name says: the loader's rules decide
                    pass
            return TF.pil_to_tensor(_mode(ds.loader(path), self.in_chans)), target
        img, target = ds[i][:2]
        from .preprocess import pil_pixels

        return TF.pil_to_tensor(_mode(pil_pixels(img), self.in_chans)), target

    def __getitem__(self, i: int) -> tuple[Tensor, Any]:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        x, target = self._read(i)  # (C, H, W) uint8
        x = TF.resize(x, self.size, interpolation=InterpolationMode(self.interpolation),
                      antialias=True)  # the shorter side to S
        h, w = x.shape[-2:]
        # The square is placed so that the evaluation centre crop taken from it later is the
        # very crop the samples path takes from the whole resized image (rounding included).
        top, left = (min(max(0, _centre(n, self.crop) - _centre(self.size, self.crop)),
                         n - self.size) for n in (h, w))
        return TF.crop(x, top, left, self.size, self.size), int(target)


def _centre(n: int, crop: int) -> int:
    """The offset of a centre crop of ``crop`` from ``n`` pixels (``TF.center_crop``'s rule)."""
    return int(round((n - crop) / 2.0))


def _decode_jpeg(path: str, in_chans: int) -> Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file

    mode = ImageReadMode.RGB if in_chans == 3 else ImageReadMode.GRAY
    return decode_image(read_file(str(path)), mode=mode, apply_exif_orientation=True)


def _mode(img: Any, in_chans: int) -> Any:
    return img.convert("RGB" if in_chans == 3 else "L")


def decode_once(source: Any, config: DataConfig, *, memory_budget: int = DEFAULT_DECODE_BUDGET,
                num_workers: int = 0, progress: bool = False, desc: str = "decode images"):
    """A tensor :class:`~transferkit.data.sources.Source` of ``source``'s images, decoded once.

    Args:
        source: a samples source (see :func:`decodable`).
        config: the backbone's data config (the pre-crop size and interpolation come from it).
        memory_budget: bytes kept in memory; a larger store is a temporary disk memmap.
        num_workers: DataLoader workers that decode.
        progress: a tqdm bar over the images.

    Returns:
        ``Source("tensor", X=(N, C, S, S) uint8, targets, classes)``.

    Example:
        >>> src = as_source("photos", config, train=True)  # doctest: +SKIP
        >>> decode_once(src, config).X.shape  # doctest: +SKIP
        torch.Size([40, 3, 73, 73])
    """
    from .sources import Source

    size, c = precrop_size(config), int(config.in_chans)
    store, _, keep = allocate_store((source.n, c, size, size), torch.uint8, memory_budget,
                                    prefix="transferkit-images-")
    targets = torch.empty(source.n, dtype=torch.long)
    loader = DataLoader(_Decode(source.dataset, size, int(config.crop_size), c,
                                config.interpolation), batch_size=64,
                        num_workers=num_workers, shuffle=False)
    pos = 0
    with progress_bar(total=source.n, desc=desc, enabled=progress) as bar:
        for x, y in loader:
            store[pos:pos + len(x)] = x
            targets[pos:pos + len(x)] = y
            pos += len(x)
            bar.update(len(x))
    out = Source("tensor", n=source.n, X=store,
                 targets=targets if source.targets is None else torch.as_tensor(source.targets),
                 classes=source.classes)
    out._decoded_keep = keep  # type: ignore[attr-defined]  # the memmap behind X, if any
    return out
