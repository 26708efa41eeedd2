"""Preprocessing built from a backbone's ``data_config``: batches on the device and PIL samples.

:class:`BatchPrep` preprocesses tensor batches (resize, centre crop or random resized crop +
flip, grey to RGB, normalisation) on their device; :func:`sample_transform` gives the
torchvision v2 transforms for PIL images (image folders).
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor
from torch.nn import functional as F

from ..backbones import DataConfig
from ..errors import DataError

__all__ = ["BatchPrep", "fix_channels", "sample_transform", "to_float_pixels"]

_INTERP = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


class BatchPrep:
    """Preprocess a batch ``(N, C, h, w)`` on its device for a backbone's ``data_config``.

    Args:
        config: the backbone's data config (crop and resize size, mean, std, channels).
        train: random resized crop + horizontal flip when ``augment`` too; else resize and
            centre crop as in evaluation.
        augment: whether to augment in training.
        normalize: subtract mean and divide by std (turn off when the data is already normalised).
        scale: area range of the random resized crop.
    """

    def __init__(self, config: DataConfig, *, train: bool, augment: bool = True,
                 normalize: bool = True, scale: tuple[float, float] = (0.35, 1.0)) -> None:
        self.config = config
        self.train = train
        self.augment = augment
        self.normalize = normalize
        self.scale = scale
        self.mode = _INTERP.get(config.interpolation, "bilinear")
        self._stats: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def _mean_std(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``mean`` and ``std`` as ``(C, 1, 1)`` tensors on ``x``'s device, made once per batch
        device and dtype."""
        key = (x.device, x.dtype)
        if key not in self._stats:
            mean = torch.tensor(self.config.mean, device=x.device, dtype=x.dtype)
            std = torch.tensor(self.config.std, device=x.device, dtype=x.dtype)
            self._stats[key] = (mean[:, None, None], std[:, None, None])
        return self._stats[key]

    def __call__(self, x: Tensor) -> Tensor:
        x = to_float_pixels(x)
        x = fix_channels(x, self.config.in_chans)
        if self.train and self.augment:
            x = self._random_resized_crop_flip(x)
        else:
            x = self._resize_center_crop(x)
        if self.normalize:
            mean, std = self._mean_std(x)
            x = torch.sub(x, mean).div_(std)  # one new tensor, not two
        return x

    def _resize_center_crop(self, x: Tensor) -> Tensor:
        crop, resize = self.config.crop_size, self.config.resize_size
        h, w = x.shape[-2:]
        if (h, w) == (crop, crop) and resize == crop:
            return x
        s = resize / min(h, w)
        size = (max(crop, round(h * s)), max(crop, round(w * s)))
        x = F.interpolate(x, size=size, mode=self.mode, align_corners=False, antialias=s < 1)
        top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
        return x[..., top:top + crop, left:left + crop]

    def _random_resized_crop_flip(self, x: Tensor) -> Tensor:
        n, crop = x.shape[0], self.config.crop_size
        area = torch.empty(n).uniform_(*self.scale)
        log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3))
        ratio = log_ratio.exp()
        w = (area * ratio).sqrt().clamp(max=1.0)  # fraction of the width kept
        h = (area / ratio).sqrt().clamp(max=1.0)
        tx = (torch.rand(n) * 2 - 1) * (1 - w)
        ty = (torch.rand(n) * 2 - 1) * (1 - h)
        flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = w * flip, tx
        theta[:, 1, 1], theta[:, 1, 2] = h, ty
        theta = theta.to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, [n, x.shape[1], crop, crop], align_corners=False)
        mode = "bilinear" if self.mode == "bicubic" else self.mode
        return F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)


def to_float_pixels(x: Tensor) -> Tensor:
    """``uint8`` pixels to float in [0, 1]; floats pass through."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    return x if x.is_floating_point() else x.float()


def fix_channels(x: Tensor, in_chans: int) -> Tensor:
    """Repeat a single grey channel to ``in_chans``; other mismatches raise a clear error."""
    if x.ndim == 3:
        raise DataError(
            f"Expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}. Add the "
            "channel axis: X[:, None] for grey images (N, H, W)."
        )
    c = x.shape[1]
    if c == in_chans:
        return x
    if c == 1:
        return x.expand(-1, in_chans, -1, -1)
    raise DataError(
        f"Images have {c} channels but the backbone takes {in_chans} (or 1, repeated). Convert "
        f"the images to {in_chans} channels (RGB) first."
    )


def sample_transform(config: DataConfig, *, train: bool, augment: bool = True):
    """torchvision v2 transforms for PIL images (image folders), from ``config``."""
    from torchvision.transforms import InterpolationMode, v2

    interp = InterpolationMode(config.interpolation)
    head = [v2.RGB()] if config.in_chans == 3 else [v2.Grayscale(config.in_chans)]
    if train and augment:
        geo = [v2.RandomResizedCrop(config.crop_size, interpolation=interp, antialias=True),
               v2.RandomHorizontalFlip()]
    else:
        geo = [v2.Resize(config.resize_size, interpolation=interp, antialias=True),
               v2.CenterCrop(config.crop_size)]
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(config.mean), list(config.std))]
    return v2.Compose(head + geo + tail)
