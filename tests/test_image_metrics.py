"""PSNR and SSIM against scikit-image's reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.metrics.image import psnr, ssim

skimage_metrics = pytest.importorskip(
    "skimage.metrics", reason="needs scikit-image (the 'test' extra: pip install scikit-image)")


def _pairs(seed: int, shape: tuple[int, ...], noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=torch.float64)
    # structured images too: a smooth ramp, so SSIM is not only measured on white noise
    ramp = torch.linspace(0, 1, shape[-1], dtype=torch.float64).expand(shape)
    a = 0.5 * a + 0.5 * ramp
    b = (a + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("shape, noise, data_range", [
    ((3, 3, 32, 32), 0.1, 1.0),
    ((2, 1, 11, 17), 0.3, 1.0),   # the smallest size the window allows, odd sizes, grey
    ((2, 3, 40, 24), 0.02, 2.0),  # another data range
])
def test_psnr_and_ssim_equal_scikit_image(shape, noise, data_range):
    a, b = _pairs(0, shape, noise)
    a32, b32 = a.float(), b.float()
    want_psnr, want_ssim = [], []
    for x, y in zip(a.numpy(), b.numpy()):
        want_psnr.append(skimage_metrics.peak_signal_noise_ratio(x, y, data_range=data_range))
        want_ssim.append(skimage_metrics.structural_similarity(
            x, y, data_range=data_range, channel_axis=0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False))
    # float64 to 1e-7 (tight enough to tell population from sample covariance, ~3e-6 apart
    # here), float32 to the 1e-4 the issue asks for
    for dtype_a, dtype_b, tol in ((a, b, 1e-7), (a32, b32, 1e-4)):
        got_p = psnr(dtype_a, dtype_b, data_range=data_range, reduction="none")
        got_s = ssim(dtype_a, dtype_b, data_range=data_range, reduction="none")
        np.testing.assert_allclose(got_p.double().numpy(), want_psnr, atol=tol, rtol=0)
        np.testing.assert_allclose(got_s.double().numpy(), want_ssim, atol=tol, rtol=0)
        assert abs(float(psnr(dtype_a, dtype_b, data_range=data_range))
                   - np.mean(want_psnr)) < 1e-4
        assert abs(float(ssim(dtype_a, dtype_b, data_range=data_range))
                   - np.mean(want_ssim)) < 1e-4
    assert 0.0 < min(want_ssim) < 0.995  # the pairs differ: a non-trivial comparison


def test_identical_images_and_monotone_in_noise():
    a, _ = _pairs(1, (2, 3, 24, 24), 0.0)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-12)
    assert torch.isinf(psnr(a, a, reduction="none")).all()
    scores = [(float(psnr(a, b)), float(ssim(a, b)))
              for b in (_pairs(1, (2, 3, 24, 24), s)[1] for s in (0.01, 0.05, 0.2))]
    assert scores[0][0] > scores[1][0] > scores[2][0]
    assert scores[0][1] > scores[1][1] > scores[2][1]


def test_ssim_is_differentiable():
    a, b = (t.float() for t in _pairs(2, (1, 3, 16, 16), 0.1))
    b.requires_grad_(True)
    (1 - ssim(a, b)).backward()
    assert b.grad is not None and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15)), {}, ValueError, "same shape"),
    ((torch.rand(3, 16, 16), torch.rand(3, 16, 16)), {}, TypeError, r"float \(N, C, H, W\)"),
    ((torch.zeros(1, 3, 16, 16, dtype=torch.uint8),) * 2, {}, TypeError, "torch.uint8"),
    ((torch.rand(1, 3, 16, 16),) * 2, {"data_range": 0}, ValueError, "data_range must be"),
    ((torch.rand(1, 3, 16, 16),) * 2, {"reduction": "sum"}, ValueError, "'mean' or 'none'"),
])
def test_bad_input(args, kwargs, error, match):
    for fn in (psnr, ssim):
        with pytest.raises(error, match=match):
            fn(*args, **kwargs)


def test_ssim_needs_the_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 10, 32), torch.rand(1, 3, 10, 32))
