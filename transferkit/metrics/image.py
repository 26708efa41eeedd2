"""Image-quality metrics for image-to-image models: PSNR and SSIM on (N, C, H, W) tensors.

Both equal scikit-image's functions image by image (``tests/test_image_metrics.py`` checks it
to 1e-4 on random images):

- :func:`psnr` = ``skimage.metrics.peak_signal_noise_ratio(target, output,
  data_range=data_range)``: ``10 log10(data_range**2 / MSE)``, the MSE over all channels and
  pixels of one image.
- :func:`ssim` = ``skimage.metrics.structural_similarity(target, output,
  data_range=data_range, channel_axis=0, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``: Wang et al. (2004)'s SSIM with their 11 x 11 Gaussian window
  (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, population covariances; the
  SSIM map is averaged over the pixels at least 5 from the border (scikit-image crops the
  same margin, so its border mode never matters) and over channels.

Both are differentiable (``1 - ssim(...)`` works as a loss), run on the inputs' device, and
compute in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim"]

_SIGMA, _TRUNCATE, _K1, _K2 = 1.5, 3.5, 0.01, 0.03
_RADIUS = int(_TRUNCATE * _SIGMA + 0.5)  # 5, as scipy.ndimage computes it
_WIN = 2 * _RADIUS + 1                   # 11


def _check(fn: str, a: object, b: object, data_range: object, reduction: object,
           min_side: int = 1) -> tuple[torch.Tensor, torch.Tensor, float]:
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.ndim != 4:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else (
                type(t).__name__)
            raise TypeError(f"{fn}: {name} must be a float (N, C, H, W) tensor, got {got}.")
    if a.shape != b.shape:
        raise ValueError(f"{fn}: a and b must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}.")
    if min(a.shape[-2:]) < min_side:
        raise ValueError(f"{fn}: images must be at least {min_side}x{min_side} (the Gaussian "
                         f"window), got {a.shape[-2]}x{a.shape[-1]}.")
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not (
            math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"{fn}: data_range must be a number > 0 (1.0 for images in [0, 1], "
                         f"255 for 0..255), got {data_range!r}.")
    if reduction not in ("mean", "none"):
        raise ValueError(f"{fn}: reduction must be 'mean' or 'none', got {reduction!r}.")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    return a.to(dtype), b.to(dtype), float(data_range)


def psnr(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0,
         reduction: str = "mean") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image, averaged over the batch.

    Args:
        a, b: (N, C, H, W) float images (which is the reference does not matter).
        data_range: the span of valid pixel values (1.0 for [0, 1]).
        reduction: ``"mean"`` (a scalar, the mean of the per-image PSNRs) or ``"none"`` (N,).

    Returns:
        A tensor of dB; ``inf`` for an image identical to its reference.

    Example:
        >>> x = torch.zeros(1, 3, 8, 8)
        >>> round(float(psnr(x, x + 0.1)), 4)
        20.0
    """
    a, b, r = _check("psnr", a, b, data_range, reduction)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    value = 10.0 * torch.log10(r * r / mse)
    return value.mean() if reduction == "mean" else value


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(-_RADIUS, _RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / _SIGMA) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0,
         reduction: str = "mean") -> torch.Tensor:
    """Structural similarity (Gaussian window), per image, averaged over the batch.

    Args:
        a, b: (N, C, H, W) float images, at least 11 x 11.
        data_range: the span of valid pixel values (1.0 for [0, 1]).
        reduction: ``"mean"`` (a scalar) or ``"none"`` (N,).

    Returns:
        SSIM in [-1, 1]; 1 for identical images.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> float(ssim(x, x))
        1.0
    """
    a, b, r = _check("ssim", a, b, data_range, reduction, min_side=_WIN)
    n, c = a.shape[:2]
    g = _gaussian_window(a.dtype, a.device)
    # one separable 'valid' Gaussian filtering of the five maps, all channels at once
    maps = torch.cat([a, b, a * a, b * b, a * b]).reshape(5 * n * c, 1, *a.shape[-2:])
    maps = F.conv2d(maps, g.view(1, 1, 1, _WIN))
    maps = F.conv2d(maps, g.view(1, 1, _WIN, 1))
    ux, uy, uxx, uyy, uxy = maps.reshape(5, n, c, *maps.shape[-2:])
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (_K1 * r) ** 2, (_K2 * r) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    value = s.mean(dim=(2, 3)).mean(dim=1)  # per channel, then over channels
    return value.mean() if reduction == "mean" else value
