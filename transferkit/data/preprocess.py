"""The one description of the preprocessing built from a backbone's ``data_config``.

Every path preprocesses through the torchvision v2 transforms made here, with the same
parameters: tensor batches on their device (:class:`BatchPrep`), PIL images in DataLoader
workers and image folders (:func:`sample_transform`), ``predict``, ``evaluate`` and
``rank_backbones``.

- Evaluation: resize the shorter side to ``resize_size``, centre crop ``crop_size``
  (``v2.Resize`` + ``v2.CenterCrop``), with the weights' ``interpolation`` and antialiasing.
- Training with augmentation: ``v2.RandomResizedCrop(crop_size)`` with torchvision's default
  area ``scale`` :data:`RRC_SCALE` and aspect ``ratio`` :data:`RRC_RATIO`, then a horizontal
  flip with probability 0.5.
- Then pixels as float in [0, 1] are normalised with ``mean`` and ``std``; a single grey
  channel is repeated to the backbone's channels.

The geometry runs on float pixels in both paths (PIL images are turned into tensors first),
so a tensor, a PIL image and a file of the same image give the same model input.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from ..backbones import DataConfig
from ..errors import DataError

__all__ = ["RRC_RATIO", "RRC_SCALE", "BatchPrep", "fix_channels", "geometry", "random_boxes",
           "sample_transform", "to_float_pixels", "check_pixels", "pil_pixels",
           "PIXEL_TOLERANCE"]

#: Area range of the training random resized crop: torchvision's ``RandomResizedCrop`` default.
RRC_SCALE: tuple[float, float] = (0.08, 1.0)
#: Aspect-ratio range of the training random resized crop: torchvision's default.
RRC_RATIO: tuple[float, float] = (3 / 4, 4 / 3)


def geometry(config: DataConfig, *, train: bool, augment: bool = True) -> v2.Compose:
    """The geometric transforms for ``config``: the one place that says what they are.

    Args:
        config: the backbone's data config (crop and resize size, interpolation).
        train: with ``augment``, random resized crop + horizontal flip; otherwise resize the
            shorter side to ``resize_size`` and centre crop ``crop_size``.
        augment: whether to augment in training.

    Returns:
        A ``v2.Compose`` that takes one image ``(C, H, W)`` (or, for evaluation, a batch
        ``(N, C, H, W)``).

    Example:
        >>> import torch, transferkit as tk
        >>> from transferkit.data.preprocess import geometry
        >>> cfg = tk.DataConfig(input_size=(3, 32, 32), resize_size=36)
        >>> tuple(geometry(cfg, train=False)(torch.rand(3, 40, 50)).shape)
        (3, 32, 32)
    """
    interp = InterpolationMode(config.interpolation)
    if train and augment:
        return v2.Compose([
            v2.RandomResizedCrop(config.crop_size, scale=RRC_SCALE, ratio=RRC_RATIO,
                                 interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
        ])
    return v2.Compose([v2.Resize(config.resize_size, interpolation=interp, antialias=True),
                       v2.CenterCrop(config.crop_size)])


class BatchPrep:
    """Preprocess a batch ``(N, C, h, w)`` on its device for a backbone's ``data_config``.

    The same transforms as :func:`sample_transform` (see the module docstring): evaluation
    geometry runs on the whole batch, training augmentation on each image with its own draw.

    Args:
        config: the backbone's data config (crop and resize size, mean, std, channels).
        train: random resized crop + horizontal flip when ``augment`` too; else resize and
            centre crop as in evaluation.
        augment: whether to augment in training.
        normalize: subtract mean and divide by std (turn off when the data is already normalised).

    Example:
        >>> import torch, transferkit as tk
        >>> cfg = tk.DataConfig(input_size=(3, 32, 32), resize_size=36)
        >>> x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
        >>> tuple(BatchPrep(cfg, train=False)(x).shape)
        (4, 3, 32, 32)
    """

    def __init__(self, config: DataConfig, *, train: bool, augment: bool = True,
                 normalize: bool = True) -> None:
        self.config = config
        self.train = train
        self.augment = augment
        self.normalize = normalize
        self.random = train and augment
        self.geometry = geometry(config, train=train, augment=augment)

    def __call__(self, x: Tensor) -> Tensor:
        _check_channels(x, self.config.in_chans)
        x = to_float_pixels(x)
        # Geometry before the grey channel is repeated: the same values, a third of the work.
        if self.random:
            x = self._random_resized_crop_flip(x)
        elif x.shape[-2:] != (self.config.crop_size,) * 2 or \
                self.config.resize_size != self.config.crop_size:
            x = self.geometry(x)
        x = fix_channels(x, self.config.in_chans)
        if self.normalize:
            x = TF.normalize(x, list(self.config.mean), list(self.config.std))  # a new tensor
        return x

    def _random_resized_crop_flip(self, x: Tensor) -> Tensor:
        """``v2.RandomResizedCrop`` + ``v2.RandomHorizontalFlip`` on each image of ``x``.

        The boxes are drawn for the whole batch at once (:func:`random_boxes`, torchvision's
        algorithm), each crop is resized by torchvision's own kernel: the per-image v2 calls
        cost more than the resizing on small images.
        """
        crop, mode = self.config.crop_size, self.config.interpolation
        top, left, h, w = random_boxes(x.shape[0], *x.shape[-2:]).tolist()
        x = torch.cat([_resize(x[i:i + 1, :, t:t + hh, l_:l_ + ww], crop, mode)
                       for i, (t, l_, hh, ww) in enumerate(zip(top, left, h, w))])  # (N, C, crop, crop)
        flip = (torch.rand(x.shape[0]) < 0.5).nonzero().flatten().to(x.device)
        return x.index_copy_(0, flip, x.index_select(0, flip).flip(-1))


def _resize(x: Tensor, size: int, mode: str) -> Tensor:
    """``TF.resize_image(x, [size, size], interpolation=mode, antialias=True)`` for float ``x``
    (the same ``F.interpolate`` call, without its per-call checks).

    Bilinear antialiasing changes nothing when both sides grow (equal within 1.2e-7, measured)
    but costs three times as much on small images: it is used only when a side shrinks.
    Bicubic keeps it always (with antialiasing torch uses PIL's cubic, a=-0.5).
    """
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    aa = mode == "bicubic" or max(x.shape[-2:]) > size
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=aa)


def random_boxes(n: int, height: int, width: int, *, scale: tuple[float, float] = RRC_SCALE,
                 ratio: tuple[float, float] = RRC_RATIO, tries: int = 10) -> Tensor:
    """``n`` random resized crop boxes ``(4, n)``: top, left, height, width.

    torchvision's ``RandomResizedCrop.get_params`` drawn for ``n`` images at once: up to
    ``tries`` draws of an area fraction in ``scale`` and a log-uniform aspect ratio in
    ``ratio``, the first box that fits kept, else the central crop clamped to ``ratio``.
    """
    area = height * width * torch.empty(n, tries).uniform_(*scale)
    log_r = torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    w = (area * log_r.exp()).sqrt().round()
    h = (area / log_r.exp()).sqrt().round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)  # the first box that fits
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    none = ~fits.any(1)
    w, h = torch.where(none, fw, w).long(), torch.where(none, fh, h).long()
    top = (torch.rand(n) * (height - h + 1)).long()
    left = (torch.rand(n) * (width - w + 1)).long()
    top = torch.where(none, (height - h) // 2, top)
    left = torch.where(none, (width - w) // 2, left)
    return torch.stack([top, left, h, w])


def to_float_pixels(x: Tensor) -> Tensor:
    """``uint8`` pixels (or integers in 0..255) to float in [0, 1]; float pixels must already
    be in [0, 1] (see :func:`check_pixels`)."""
    check_pixels(x)
    if x.dtype == torch.uint8:
        return TF.to_dtype(x, torch.float32, scale=True)  # as v2.ToDtype does for PIL images
    if not x.is_floating_point():  # integers in 0..255: the same scale as uint8
        return TF.to_dtype(x.to(torch.uint8), torch.float32, scale=True)
    return x


#: Float pixels may overshoot [0, 1] by this much (rounding, a resize's ringing).
PIXEL_TOLERANCE = 0.01


def check_pixels(x: Tensor) -> None:
    """The pixel rule of every tensor path: ``uint8`` (0..255), other integers in 0..255, or
    finite floats in [0, 1]. Anything else raises :class:`DataError` with the fix.

    Example:
        >>> check_pixels(torch.full((1, 3, 4, 4), 200.0))
        Traceback (most recent call last):
        ...
        transferkit.errors.DataError: Float pixels must be in [0, 1], got values in [200, 200]: they look like 0..255 values. Divide by 255 (X / 255), or pass uint8 pixels.
    """
    if x.dtype == torch.uint8 or x.numel() == 0:
        return
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            bad = (~torch.isfinite(x.flatten(1) if x.ndim > 1 else x[:, None])).any(1)
            raise DataError(
                f"The inputs hold NaN or infinite values (first bad samples: "
                f"{bad.nonzero().flatten()[:5].tolist()}). Clean or drop those samples first."
            )
        lo, hi = (float(v) for v in torch.aminmax(x))
        if lo >= -PIXEL_TOLERANCE and hi <= 1 + PIXEL_TOLERANCE:
            return
        why = ("they look like 0..255 values. Divide by 255 (X / 255), or pass uint8 pixels"
               if lo >= 0 and hi <= 255 else
               "they look normalised already. Pass unnormalised pixels (transferkit "
               "normalises with the backbone's mean and std), or a DataLoader of ready batches "
               "(predict: preprocess=False)")
        raise DataError(f"Float pixels must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]: "
                        f"{why}.")
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"Pixels must be uint8 or float, got {x.dtype}.")
    lo, hi = (int(v) for v in torch.aminmax(x))
    if lo < 0 or hi > 255:
        raise DataError(
            f"Integer pixels must be in 0..255 (uint8), got {x.dtype} values in [{lo}, {hi}]. "
            "Pass uint8, or float in [0, 1] (for 16-bit images: X / 65535)."
        )


def pil_pixels(image: Any) -> Any:
    """A PIL image upright and at 8 bits: the decoding rule of every PIL path.

    The EXIF orientation is applied (``ImageOps.exif_transpose``: a phone photo taken
    sideways is shown upright), and 16-bit or 32-bit images (modes ``I;16``, ``I``, ``F``) are
    scaled by their bit depth to 8-bit grey, so that a 0..65535 gradient stays a gradient
    (``convert("RGB")`` saturates it to white). Other inputs are returned unchanged.
    """
    from PIL import Image, ImageOps

    if not isinstance(image, Image.Image):
        return image
    if image.getexif().get(0x0112, 1) != 1:  # 0x0112: Orientation; 1 is upright
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        import numpy as np

        a = np.asarray(image, dtype=np.float64)
        hi = float(a.max()) if a.size else 0.0
        if image.mode.startswith("I;16"):
            scale = 65535.0
        elif image.mode == "F" and hi <= 1.0:
            scale = 1.0
        else:
            scale = next((s for s in (255.0, 65535.0) if hi <= s and (image.mode == "F"
                                                                      or s == 65535.0)), hi)
        image = Image.fromarray(np.clip(a / max(scale, 1e-12) * 255 + 0.5, 0, 255)
                                .astype(np.uint8), "L")
    return image


def _check_channels(x: Tensor, in_chans: int) -> None:
    """A batch ``(N, C, H, W)`` with ``in_chans`` channels or a single grey one, else a clear error."""
    if x.ndim != 4:
        raise DataError(
            f"Expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}. Add the "
            "channel axis: X[:, None] for grey images (N, H, W)."
        )
    c = x.shape[1]
    if c != in_chans and c != 1:
        raise DataError(
            f"Images have {c} channels but the backbone takes {in_chans} (or 1, repeated). Convert "
            f"the images to {in_chans} channels (RGB) first."
        )


def fix_channels(x: Tensor, in_chans: int) -> Tensor:
    """Repeat a single grey channel to ``in_chans``; other mismatches raise a clear error."""
    _check_channels(x, in_chans)
    return x if x.shape[1] == in_chans else x.expand(-1, in_chans, -1, -1)


def sample_transform(config: DataConfig, *, train: bool, augment: bool = True) -> v2.Compose:
    """torchvision v2 transforms for one PIL image (image folders, PIL datasets, ``predict``).

    The image becomes float pixels in [0, 1] with the backbone's channels, then gets the same
    :func:`geometry` and normalisation as tensor batches get from :class:`BatchPrep`.

    Example:
        >>> import transferkit as tk
        >>> from PIL import Image
        >>> cfg = tk.DataConfig(input_size=(3, 32, 32), resize_size=36)
        >>> tuple(sample_transform(cfg, train=False)(Image.new("L", (40, 50))).shape)
        (3, 32, 32)
    """
    head: list[Any] = [pil_pixels]  # upright, 8-bit (EXIF orientation, 16-bit scaling)
    head += [v2.RGB()] if config.in_chans == 3 else [v2.Grayscale(config.in_chans)]
    return v2.Compose(head + [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                              *geometry(config, train=train, augment=augment).transforms,
                              v2.Normalize(list(config.mean), list(config.std))])
