"""Max- and average-pooling in plain PyTorch.

Max-pooling, for one channel and one output position ``(x, y)``::

    f(x, y) = max_{(i, j) in R} I(s*x + d*i, s*y + d*j)

where ``R`` is the ``kH x kW`` window, ``s`` the stride and ``d`` the dilation. Padding adds
``-inf`` around ``I`` (it never wins the max). Average-pooling takes the mean over the window
instead, padding with zeros; what it divides by depends on ``count_include_pad``.
"""

from __future__ import annotations

import torch
from torch.nn.functional import pad as constant_pad

from ._validation import (
    IntPair,
    PoolGeometry,
    ReferenceArgumentError,
    batched_input,
    pool2d_geometry,
)

__all__ = ["avg_pool2d", "max_pool2d"]


def _windows(x: torch.Tensor, geo: PoolGeometry, fill: float) -> torch.Tensor:
    """Every pooling window of the padded input, as a view: ``(N, C, Ho, Wo, kH, kW)``."""
    top, bottom, left, right = geo.pad
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    image = constant_pad(x, (left, right, top, bottom), value=fill)  # (N, C, Hp, Wp)
    windows = image.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)
    h_out, w_out = geo.out_size
    return windows[:, :, :h_out, :w_out, ::dh, ::dw]  # (N, C, Ho, Wo, kH, kW)


def _lowest(dtype: torch.dtype) -> float:
    return float("-inf") if dtype.is_floating_point else torch.iinfo(dtype).min


def max_pool2d(
    input: torch.Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """2-D max-pooling: the largest value in each (dilated) window.

    Same arguments and results as ``torch.nn.functional.max_pool2d``.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size: window size, int or ``(kH, kW)``.
        stride: step between windows; None (the default) means ``kernel_size``.
        padding: ``-inf`` cells around the input, at most ``kernel_size // 2``.
        dilation: spacing between the cells of a window.
        ceil_mode: round the output size up, letting the last window hang over the edge.
        return_indices: also return where each maximum came from, as ``h * W + w``.

    Returns:
        ``(N, C, H_out, W_out)``, and the indices of the same shape if ``return_indices``.

    Example:
        >>> max_pool2d(torch.arange(16.0).view(1, 1, 4, 4), 2)
        tensor([[[[ 5.,  7.],
                  [13., 15.]]]])
    """
    x, unbatched = batched_input("max_pool2d", input, empty_ok=False)
    geo = pool2d_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    windows = _windows(x, geo, _lowest(x.dtype))  # (N, C, Ho, Wo, kH, kW)
    if not return_indices and not (torch.is_grad_enabled() and x.requires_grad):
        out = windows.amax(dim=(-2, -1))  # same values, no copy of the windows
        return out[0] if unbatched else out
    # max over one flat dim sends the whole gradient to the first maximum, like torch
    # (amax would share it between ties).
    out, offset = windows.flatten(-2).max(dim=-1)  # (N, C, Ho, Wo), offset = i * kW + j
    if not return_indices:
        return out[0] if unbatched else out
    indices = _input_indices(offset, geo, x.shape[3])
    return (out[0], indices[0]) if unbatched else (out, indices)


def _input_indices(offset: torch.Tensor, geo: PoolGeometry, width: int) -> torch.Tensor:
    """Turn a window offset ``i * kW + j`` into the input position ``h * W + w``."""
    (h_out, w_out), kw = geo.out_size, geo.kernel[1]
    (sh, sw), (dh, dw), (ph, pw) = geo.stride, geo.dilation, geo.padding
    i, j = offset // kw, offset % kw
    first_h = torch.arange(h_out, device=offset.device).view(-1, 1) * sh - ph  # (Ho, 1)
    first_w = torch.arange(w_out, device=offset.device) * sw - pw  # (Wo,)
    return (first_h + dh * i) * width + (first_w + dw * j)


def avg_pool2d(
    input: torch.Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> torch.Tensor:
    """2-D average-pooling: the sum of each window divided by its size.

    Same arguments and results as ``torch.nn.functional.avg_pool2d``. The divisor is the
    window size clipped to the padded input (``count_include_pad=True``) or to the input
    itself (``False``); ``divisor_override`` replaces it.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size: window size, int or ``(kH, kW)``.
        stride: step between windows; None (the default) means ``kernel_size``.
        padding: zero cells around the input, at most ``kernel_size // 2``.
        ceil_mode: round the output size up, letting the last window hang over the edge.
        count_include_pad: count the padding zeros in the divisor.
        divisor_override: divide every window sum by this non-zero int instead.

    Returns:
        ``(N, C, H_out, W_out)`` (or ``(C, H_out, W_out)`` for unbatched input).

    Example:
        >>> avg_pool2d(torch.arange(16.0).view(1, 1, 4, 4), 2)
        tensor([[[[ 2.5000,  4.5000],
                  [10.5000, 12.5000]]]])
    """
    x, unbatched = batched_input("avg_pool2d", input, empty_ok=False)
    geo = pool2d_geometry("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (
        isinstance(divisor_override, bool) or not isinstance(divisor_override, int)
    ):
        raise TypeError(
            f"avg_pool2d: divisor_override must be an int or None, got {type(divisor_override).__name__}."
        )
    if divisor_override == 0:
        raise ReferenceArgumentError(
            "avg_pool2d: divisor_override must be a non-zero int or None, got 0."
        )
    sums = _window_sums(x, geo)  # (N, C, Ho, Wo)
    if divisor_override is not None:
        divisor = torch.tensor(divisor_override, device=x.device)
    else:
        sizes = [
            _window_sizes(n, *args, count_include_pad, x.device)
            for n, *args in zip(x.shape[2:], geo.kernel, geo.stride, geo.padding, geo.out_size)
        ]
        divisor = sizes[0].view(-1, 1) * sizes[1]  # (Ho, Wo)
    if x.dtype.is_floating_point:
        out = sums / divisor.to(x.dtype)
    else:  # integer pooling truncates, like torch's C++ division
        out = torch.div(sums, divisor, rounding_mode="trunc").to(x.dtype)
    return out[0] if unbatched else out


def _window_sums(x: torch.Tensor, geo: PoolGeometry) -> torch.Tensor:
    """``sum_{(i, j) in R} I(s*x + i, s*y + j)``: one strided view of the input per offset.

    Adding ``kH*kW`` shifted views is faster than reducing the window view's two small
    strided dimensions (``_windows(x, geo, 0).sum(dim=(-2, -1))`` gives the same values).
    """
    top, bottom, left, right = geo.pad
    (kh, kw), (sh, sw), (h_out, w_out) = geo.kernel, geo.stride, geo.out_size
    image = constant_pad(x, (left, right, top, bottom), value=0)  # (N, C, Hp, Wp)
    total = None
    for i in range(kh):
        for j in range(kw):
            shifted = image[
                :, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw
            ]
            total = shifted.clone() if total is None else total.add_(shifted)  # (N, C, Ho, Wo)
    return total


def _window_sizes(
    size: int, k: int, s: int, p: int, out: int, count_include_pad: bool, device: torch.device
) -> torch.Tensor:
    """How many cells of each window along one axis the divisor counts: ``(out,)``."""
    start = torch.arange(out, device=device) * s - p
    end = torch.clamp(start + k, max=size + p)  # a ceil_mode window stops at the padding's end
    if not count_include_pad:
        start, end = start.clamp(min=0), end.clamp(max=size)
    return end - start
