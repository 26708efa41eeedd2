"""Data for dense tasks: images with a per-pixel target (a mask, or another image).

One path for every dense task; what differs is the kind of target:

- ``"mask"`` (segmentation): integer class indices ``(H, W)``; geometry moves it with its image
  as a ``tv_tensors.Mask`` (nearest neighbour: labels are never interpolated).
- ``"image"`` (image-to-image): a ``(C, H, W)`` image; geometry moves it with its input as a
  ``tv_tensors.Image`` (the same interpolation as the input).

Geometry (torchvision v2, both members of a pair in one call, so one random draw):

- training with augmentation: :func:`transferkit.data.preprocess.geometry`'s random resized
  crop + flip, the classification rule, applied to the pair;
- training without augmentation: both resized to ``crop_size x crop_size``;
- evaluation: the input resized to ``crop_size x crop_size``; the target kept at its own
  resolution (the logits are resized to it when scored).
- image pairs (image-to-image) are never resized, since the scale is what the model learns:
  training augmentation is a random ``crop_size`` crop of pairs larger than that, and a flip;
  evaluation uses the pair as it is; ``uint8`` targets are scaled to [0, 1] like the inputs.

Inputs are then normalised as :class:`~transferkit.data.preprocess.BatchPrep` does. Data comes
as ``(X, targets)`` tensors, a ``Dataset`` yielding ``(image, target)`` (tensors, arrays or PIL
images), or a folder ``root/images/<name>.<ext>`` + ``root/masks/<name>.png`` (index or palette
PNGs, read as class indices).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from .._tasks import DENSE_TASKS
from ..backbones import DataConfig
from ..errors import DataError
from .preprocess import fix_channels, geometry, to_float_pixels

__all__ = ["DensePrep", "DenseSampleTransform", "SegmentationFolder", "dense_collate",
           "read_mask", "TARGET_KINDS", "IMAGE_EXTENSIONS"]

TARGET_KINDS = tuple(DENSE_TASKS.values())  # ("mask", "image"): the dense tasks' targets
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _wrap_target(y: Tensor, kind: str) -> Any:
    return tv_tensors.Mask(y) if kind == "mask" else tv_tensors.Image(y)


def _check_pair(x: Tensor, y: Tensor, kind: str) -> None:
    if tuple(x.shape[-2:]) != tuple(y.shape[-2:]):
        what = "mask" if kind == "mask" else "target image"
        raise DataError(
            f"A {what} is {tuple(y.shape[-2:])} (H, W) but its image is "
            f"{tuple(x.shape[-2:])}: each {what} must have its image's size. Resize the "
            f"{what}s{' with nearest-neighbour (never interpolate labels)' if kind == 'mask' else ''}"
            ", or the images."
        )


class DensePrep:
    """Preprocess a batch of pairs ``(x (N, C, h, w), y)`` on its device (see the module
    docstring); ``paired = True`` tells the data path to pass the targets along.

    Args:
        config: the backbone's data config.
        train, augment: the geometry (random resized crop + flip only when both).
        target: ``"mask"`` or ``"image"``.
        normalize: normalise the inputs with ``mean`` and ``std``.

    Example:
        >>> import torch, transferkit as tk
        >>> cfg = tk.DataConfig(input_size=(3, 32, 32), resize_size=36)
        >>> x, y = DensePrep(cfg, train=False)(torch.rand(2, 1, 50, 40),
        ...                                    torch.zeros(2, 50, 40, dtype=torch.long))
        >>> tuple(x.shape), tuple(y.shape)
        ((2, 3, 32, 32), (2, 50, 40))
    """

    paired = True

    def __init__(self, config: DataConfig, *, train: bool, augment: bool = True,
                 target: str = "mask", normalize: bool = True) -> None:
        if target not in TARGET_KINDS:
            raise ValueError(f"DensePrep: target must be one of {list(TARGET_KINDS)}, got "
                             f"{target!r}.")
        self.config, self.train, self.augment, self.target = config, train, augment, target
        self.normalize = normalize
        self.random = train and augment
        self.geometry = geometry(config, train=True, augment=True) if self.random else None
        if target == "image" and self.random:  # the scale is what the model learns: no resize
            self.geometry = v2.Compose([_CropAtMost(config.crop_size), v2.RandomHorizontalFlip()])
        self.size = [config.crop_size, config.crop_size]
        self.interp = InterpolationMode(config.interpolation)

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x = to_float_pixels(x)
        _check_pair(x, y, self.target)
        if self.target == "image":
            y = to_float_pixels(y)
        if self.random:  # one draw per pair, as in DataLoader workers
            pairs = [self.geometry(tv_tensors.Image(xi), _wrap_target(yi, self.target))
                     for xi, yi in zip(x, y)]
            x = torch.stack([p[0].as_subclass(Tensor) for p in pairs])
            y = torch.stack([p[1].as_subclass(Tensor) for p in pairs])
        elif self.target != "image":  # image pairs stay at their own resolution
            if list(x.shape[-2:]) != self.size:
                x = TF.resize(x, self.size, interpolation=self.interp, antialias=True)
            if self.train and list(y.shape[-2:]) != self.size:
                y = TF.resize(_wrap_target(y, self.target), self.size,
                              antialias=self.target != "mask").as_subclass(Tensor)
        x = fix_channels(x, self.config.in_chans)
        if self.normalize:
            x = TF.normalize(x, list(self.config.mean), list(self.config.std))
        return x, y


class _CropAtMost(v2.RandomCrop):
    """A random ``size`` x ``size`` crop of images larger than that; smaller sides are kept."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        self.size = (min(self._side, h), min(self._side, w))
        return super().make_params(flat_inputs)

    def __init__(self, side: int) -> None:
        super().__init__(side)
        self._side = side


class DenseSampleTransform:
    """The per-sample form of :class:`DensePrep` for ``Dataset`` items (PIL images, arrays or
    tensors): ``(image, target) -> (x (C, crop, crop), y)``; ``paired = True``."""

    paired = True

    def __init__(self, config: DataConfig, *, train: bool, augment: bool = True,
                 target: str = "mask") -> None:
        self.prep = DensePrep(config, train=train, augment=augment, target=target)
        self.target = target

    def __call__(self, image: Any, target: Any) -> tuple[Tensor, Tensor]:
        x = _image_tensor(image)
        y = _mask_tensor(target) if self.target == "mask" else _image_tensor(target)
        xb, yb = self.prep(x[None], y[None])
        return xb[0], yb[0]


def _image_tensor(image: Any) -> Tensor:
    """``(C, H, W)`` from a PIL image, an ``(H, W[, C])`` array or a ``(C, H, W)`` tensor."""
    if isinstance(image, Tensor):
        return image[None] if image.ndim == 2 else image
    if isinstance(image, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(image))
        return t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        return TF.pil_to_tensor(image)
    raise TypeError(f"A dense dataset's image must be a tensor, an array or a PIL image, got "
                    f"{type(image).__name__}.")


def _mask_tensor(mask: Any) -> Tensor:
    """``(H, W)`` class indices from a PIL image (index/palette: the indices), array or tensor."""
    from PIL import Image

    if isinstance(mask, Image.Image):
        if mask.mode in ("RGB", "RGBA"):
            raise DataError(
                f"A mask is an {mask.mode} image; masks must hold one class index per pixel: "
                "save them as single-channel (mode 'L' or 'I') or palette ('P') PNGs.")
        mask = np.asarray(mask)
    t = torch.from_numpy(np.array(mask)) if not isinstance(mask, Tensor) else mask  # a copy
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    return t if t.is_floating_point() or t.dtype == torch.bool else t.long()


def read_mask(path: str | os.PathLike) -> Tensor:
    """A mask PNG as ``(H, W)`` int64 class indices (palette PNGs give their indices, not the
    colours).

    Example:
        >>> read_mask("root/masks/cell_01.png").shape  # doctest: +SKIP
        torch.Size([256, 256])
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return _mask_tensor(im)


def dense_collate(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Any]:
    """Stack the inputs; stack the targets when they share a size, else keep them as a list
    (evaluation keeps every target at its own resolution)."""
    xs = default_collate([b[0] for b in batch])
    ys = [b[1] for b in batch]
    if len({tuple(y.shape) for y in ys}) == 1:
        return xs, torch.stack(ys)
    return xs, ys


class SegmentationFolder(Dataset):
    """``root/images/<name>.<ext>`` with ``root/masks/<name>.png``: ``(PIL image, mask)``.

    Every image must have its mask (matched by file stem); masks are read as class indices
    (single-channel or palette PNGs).

    Args:
        root: the folder holding ``images/`` and ``masks/``.
        classes: optional class names (index = mask value).

    Example:
        >>> ds = SegmentationFolder("data/cells")  # doctest: +SKIP
        >>> image, mask = ds[0]  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike, classes: Sequence[str] | None = None) -> None:
        root = Path(root)
        images_dir, masks_dir = root / "images", root / "masks"
        if not images_dir.is_dir() or not masks_dir.is_dir():
            raise DataError(
                f"{str(root)!r} is not a segmentation folder: expected {str(images_dir)!r} "
                f"(images) and {str(masks_dir)!r} (masks, <name>.png with one class index per "
                "pixel).")
        images = sorted(p for p in images_dir.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() == ".png"}
        missing = [p.name for p in images if p.stem not in masks]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) in {str(images_dir)!r} have no mask in "
                f"{str(masks_dir)!r} (expected masks/<name>.png): {missing[:5]}.")
        if not images:
            raise DataError(f"{str(images_dir)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        self.root = root
        self.samples = [(str(p), str(masks[p.stem])) for p in images]
        self.classes = list(classes) if classes else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, Tensor]:
        from PIL import Image

        image_path, mask_path = self.samples[i]
        with Image.open(image_path) as im:
            im.load()
            image = im if im.mode in ("L", "RGB") else im.convert("RGB")
        return image, read_mask(mask_path)


def batch_prep(config: DataConfig, target: str | None, *, train: bool, augment: bool = False):
    """The batch preprocessing of a task: :class:`~transferkit.data.preprocess.BatchPrep` for
    images alone (``target=None``), :class:`DensePrep` for dense pairs."""
    if target is None:
        from .preprocess import BatchPrep

        return BatchPrep(config, train=train, augment=augment)
    return DensePrep(config, train=train, augment=augment, target=target)


def input_items(inputs: Any) -> list[tuple[Any, str | None]]:
    """``(image, name)`` per input: tensors ``(C, H, W)``/``(N, C, H, W)``, PIL images, paths."""
    from PIL import Image

    if isinstance(inputs, Tensor):
        if inputs.ndim == 3:
            return [(inputs, None)]
        if inputs.ndim == 4:
            return [(x, None) for x in inputs]
        raise DataError(f"predict: a tensor input must be one image (C, H, W) or a batch "
                        f"(N, C, H, W), got shape {tuple(inputs.shape)}.")
    if isinstance(inputs, (str, os.PathLike)):
        p = Path(inputs)
        if not p.is_file():
            raise FileNotFoundError(f"predict: image file {str(p)!r} does not exist.")
        with Image.open(p) as im:
            im.load()
            return [(im if im.mode in ("L", "RGB") else im.convert("RGB"), p.stem)]
    if isinstance(inputs, Image.Image):
        return [(inputs, None)]
    if isinstance(inputs, (list, tuple)):
        return [item for x in inputs for item in input_items(x)]
    raise TypeError("predict: inputs must be a tensor (C, H, W) or (N, C, H, W), a PIL image, "
                    f"an image path, or a list of those; got {type(inputs).__name__}.")
