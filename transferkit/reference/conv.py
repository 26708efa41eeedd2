"""Convolution (a cross-correlation) in plain PyTorch, in two forms.

The formula, for one output channel and one output position ``(x, y)``::

    f(x, y) = sum_{i<kH} sum_{j<kW} W(i, j) * I(x + i, y + j)

summed over the input channels of the group too. With stride ``s`` and dilation ``d`` the
input is read at ``I(s*x + d*i, s*y + d*j)``; padding adds zeros around ``I`` first.
There is no kernel flip: deep learning's "convolution" is a cross-correlation (see
docs/reference-ops.md).

- :func:`conv2d_loops` follows the formula term by term: one loop step per kernel offset
  ``(i, j)``, each adding ``W(i, j)`` times a shifted view of the input.
- :func:`conv2d` is the vectorised form for real use: all ``(i, j, c)`` terms of every
  position side by side in one patch matrix ("im2col"), then one matmul with the weight.
  For large stride-1 layers it instead accumulates one matmul per kernel offset on shifted
  views of the flattened image, which never copies the input (see _use_shifted_matmuls).
"""

from __future__ import annotations

import torch
from torch.nn.functional import pad as zero_pad

from ._validation import ConvGeometry, IntPair, batched_input, conv2d_geometry

__all__ = ["conv2d", "conv2d_loops"]

# conv2d takes the shifted-matmul path (stride 1, one group) once the patch matrix would hold
# at least this many elements (32 MiB of float32); see _use_shifted_matmuls.
_SHIFTED_MIN_ELEMENTS = 1 << 23


def conv2d_loops(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution written as the formula: a loop over the kernel offsets ``(i, j)``.

    Same arguments and results as ``torch.nn.functional.conv2d``; slow, meant to be read.

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: ``(C_out,)`` or None.
        stride: step between output positions, int or ``(sH, sW)``.
        padding: zeros around the input, int, ``(pH, pW)``, ``"same"`` or ``"valid"``.
        dilation: spacing between kernel taps, int or ``(dH, dW)``.
        groups: input and output channels split into this many independent groups.

    Returns:
        ``(N, C_out, H_out, W_out)`` (or ``(C_out, H_out, W_out)`` for unbatched input).

    Example:
        >>> out = conv2d_loops(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), padding=1)
        >>> out.shape
        torch.Size([1, 4, 8, 8])
    """
    x, unbatched = batched_input("conv2d_loops", input)
    geo = conv2d_geometry("conv2d_loops", x, weight, bias, stride, padding, dilation, groups)
    (top, bottom, left, right), (sh, sw), (dh, dw) = geo.pad, geo.stride, geo.dilation
    (h_out, w_out), (kh, kw) = geo.out_size, geo.kernel
    n, c_out = x.shape[0], weight.shape[0]
    image = zero_pad(x, (left, right, top, bottom))  # I, zero-padded: (N, C_in, Hp, Wp)
    image = image.unflatten(1, (groups, -1))  # (N, G, C_in/G, Hp, Wp)
    w = weight.unflatten(0, (groups, -1))  # (G, C_out/G, C_in/G, kH, kW)
    out = x.new_zeros(n, groups, c_out // groups, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            # I(s*x + d*i, s*y + d*j) for every output position (x, y): a strided view.
            rows = slice(dh * i, dh * i + sh * (h_out - 1) + 1, sh)
            cols = slice(dw * j, dw * j + sw * (w_out - 1) + 1, sw)
            shifted = image[..., rows, cols]  # (N, G, C_in/G, H_out, W_out)
            # W(i, j) * I(...), summed over the input channels c of each group.
            out = out + torch.einsum("goc,ngchw->ngohw", w[..., i, j], shifted)
    out = out.flatten(1, 2)  # (N, C_out, H_out, W_out)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out[0] if unbatched else out


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution, vectorised: a patch matrix (im2col) times the weight matrix.

    Same arguments and results as ``torch.nn.functional.conv2d``. The input is read in
    channels-last order, so that each patch row ``(i, j, c)`` is a run of memory; the
    result is an ``(N, C_out, H_out, W_out)`` view of channels-last memory (a strided view,
    not a contiguous tensor: use ``.contiguous()`` before ``.view()``). Large stride-1 layers
    skip the patch matrix and sum one matmul per kernel offset (see _use_shifted_matmuls).

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: ``(C_out,)`` or None.
        stride: step between output positions, int or ``(sH, sW)``.
        padding: zeros around the input, int, ``(pH, pW)``, ``"same"`` or ``"valid"``.
        dilation: spacing between kernel taps, int or ``(dH, dW)``.
        groups: input and output channels split into this many independent groups.

    Returns:
        ``(N, C_out, H_out, W_out)`` (or ``(C_out, H_out, W_out)`` for unbatched input).

    Example:
        >>> out = conv2d(torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), stride=2)
        >>> out.shape
        torch.Size([2, 4, 3, 3])
    """
    x, unbatched = batched_input("conv2d", input)
    geo = conv2d_geometry("conv2d", x, weight, bias, stride, padding, dilation, groups)
    top, bottom, left, right = geo.pad
    image = x.permute(0, 2, 3, 1)  # (N, H, W, C_in), a view
    image = zero_pad(image, (0, 0, left, right, top, bottom)).contiguous()  # (N, Hp, Wp, C_in)
    if _use_shifted_matmuls(image, geo, groups):
        out = _shifted_matmuls(image, weight, bias, geo)  # (N, Ho, Wo, C_out)
    else:
        out = _im2col_matmul(image, weight, bias, geo, groups)  # (N, Ho, Wo, C_out)
    out = out.permute(0, 3, 1, 2)  # (N, C_out, Ho, Wo)
    return out[0] if unbatched else out


def _patch_view(
    image: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> torch.Tensor:
    """All kernel windows of a channels-last image, as a view: no copy.

    ``patches[n, x, y, i, j, c] = image[n, s*x + d*i, s*y + d*j, c]``.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    windows = image.unfold(1, dh * (kh - 1) + 1, sh).unfold(2, dw * (kw - 1) + 1, sw)
    windows = windows[..., ::dh, ::dw]  # (N, Ho, Wo, C_in, kH, kW)
    return windows.permute(0, 1, 2, 4, 5, 3)  # (N, Ho, Wo, kH, kW, C_in)


def _im2col_matmul(
    image: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geo: ConvGeometry,
    groups: int,
) -> torch.Tensor:
    """Patch matrix (one row per output position, one column per (i, j, c)) times the weight.

    Args:
        image: zero-padded, channels-last ``(N, Hp, Wp, C_in)``.

    Returns:
        ``(N, Ho, Wo, C_out)``.
    """
    patches = _patch_view(image, geo.kernel, geo.stride, geo.dilation)  # (N, Ho, Wo, kH, kW, C_in)
    n, h_out, w_out = patches.shape[:3]
    rows = patches.unflatten(-1, (groups, -1)).movedim(-2, 0)  # (G, N, Ho, Wo, kH, kW, C_in/G)
    k = geo.kernel[0] * geo.kernel[1] * rows.shape[-1]
    cols = rows.reshape(groups, n * h_out * w_out, k)  # (G, L, K), K = kH*kW*C_in/G: the copy
    w = weight.unflatten(0, (groups, -1)).permute(0, 3, 4, 2, 1)  # (G, kH, kW, C_in/G, C_out/G)
    w = w.flatten(1, 3)  # (G, K, C_out/G), rows in the patch's (i, j, c) order
    out = torch.bmm(cols, w) if bias is None else torch.baddbmm(bias.view(groups, 1, -1), cols, w)
    out = out.view(groups, n, h_out, w_out, w.shape[2]).permute(
        1, 2, 3, 0, 4
    )  # (N, Ho, Wo, G, C_out/G)
    return out.flatten(3)  # (N, Ho, Wo, C_out)


def _shifted_matmuls(
    image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geo: ConvGeometry
) -> torch.Tensor:
    """Stride 1, one group: one matmul per kernel offset (i, j), on a shifted view of the image.

    Flatten the padded image to rows ``(N*Hp*Wp, C_in)``. The output at row ``r`` (image ``n``,
    position ``(x, y)``, ``r = n*Hp*Wp + x*Wp + y``) reads, for offset ``(i, j)``, the input row
    ``r + dH*i*Wp + dW*j``: for all positions at once that is one slice of rows, no copy.
    Rows whose window wraps past the right or bottom edge compute values the crop drops.

    Args:
        image: zero-padded, channels-last ``(N, Hp, Wp, C_in)``, contiguous.

    Returns:
        ``(N, Ho, Wo, C_out)``, a strided view of the ``(rows, C_out)`` result.
    """
    n, hp, wp, c_in = image.shape
    (kh, kw), (dh, dw), (h_out, w_out) = geo.kernel, geo.dilation, geo.out_size
    flat = image.view(n * hp * wp, c_in)
    rows = flat.shape[0] - (dh * (kh - 1) * wp + dw * (kw - 1))  # 1 + the last output's row
    w = weight.permute(2, 3, 1, 0).contiguous()  # (kH, kW, C_in, C_out): W(i, j) as a matrix
    out = None
    for i in range(kh):
        for j in range(kw):
            shift = dh * i * wp + dw * j
            shifted = flat[shift : shift + rows]  # (rows, C_in): I(x + i, y + j) for every row
            if out is None:
                out = shifted @ w[i, j] if bias is None else torch.addmm(bias, shifted, w[i, j])
            else:
                out = out.addmm_(shifted, w[i, j])  # out += I(x + i, y + j) W(i, j)
    c_out = w.shape[3]
    return out.as_strided((n, h_out, w_out, c_out), (hp * wp * c_out, wp * c_out, c_out, 1))


def _use_shifted_matmuls(image: torch.Tensor, geo: ConvGeometry, groups: int) -> bool:
    """Whether conv2d takes the shifted-matmul path rather than the patch matrix.

    The patch matrix holds every input value kH*kW times; once it is large, writing it costs
    more than the matmul (fresh memory, page faults). Shifted matmuls never copy the input but
    compute some wasted rows, so they pay off for large, stride-1 layers.
    """
    n, _, _, c_in = image.shape
    patch_elements = n * geo.out_size[0] * geo.out_size[1] * geo.kernel[0] * geo.kernel[1] * c_in
    return (
        geo.stride == (1, 1) and groups == 1 and n > 0 and patch_elements >= _SHIFTED_MIN_ELEMENTS
    )
