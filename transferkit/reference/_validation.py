"""Argument checking shared by the reference ops.

Every check mirrors a rule of the ``torch.nn.functional`` twin: where torch rejects an
argument combination, the reference raises :class:`ReferenceArgumentError` (a ``ValueError``)
saying what was wrong, what was expected, what came in and how to fix it. Wrong *types*
(a float stride, a list instead of a tensor) raise ``TypeError``.

The checks also work out the geometry the ops need (padding on each side, output size),
so that each op is only the maths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import torch

__all__ = [
    "ConvGeometry",
    "IntPair",
    "PoolGeometry",
    "ReferenceArgumentError",
    "as_pair",
    "batched_input",
    "check_linear",
    "check_tensor",
    "conv2d_geometry",
    "pool2d_geometry",
]

IntPair: TypeAlias = int | Sequence[int]
"""An int used for both height and width, or a sequence of one or two ints (height, width)."""


class ReferenceArgumentError(ValueError):
    """An argument combination that the reference ops (and their torch twins) reject."""


def _fmt(pair: Sequence[int]) -> str:
    return f"({pair[0]} x {pair[1]})"


def check_tensor(op: str, name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}.")
    return value


def as_pair(op: str, name: str, value: object, *, minimum: int) -> tuple[int, int]:
    """Turn an int or a sequence of one or two ints into ``(height, width)``.

    Args:
        op: the public function name, used in messages.
        name: the argument name, used in messages.
        value: what the caller passed.
        minimum: the smallest allowed value in each dimension.

    Returns:
        ``(height, width)``.

    Example:
        >>> as_pair("conv2d", "stride", 2, minimum=1)
        (2, 2)
    """
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise TypeError(f"{op}: {name} must hold ints, got {value!r}.")
        if len(items) not in (1, 2):
            raise ReferenceArgumentError(
                f"{op}: {name} must be an int or a sequence of 1 or 2 ints (height, width), "
                f"got {len(items)} values {value!r}."
            )
        pair = (items[0], items[-1])
    else:
        raise TypeError(
            f"{op}: {name} must be an int or a tuple of two ints, got {type(value).__name__} {value!r}."
        )
    if min(pair) < minimum:
        raise ReferenceArgumentError(
            f"{op}: {name} must be >= {minimum} in each dimension, got {pair}."
        )
    return pair


def batched_input(op: str, input: object, *, empty_ok: bool = True) -> tuple[torch.Tensor, bool]:
    """Return the input as ``(N, C, H, W)`` and whether it came unbatched as ``(C, H, W)``.

    Args:
        op: the public function name, used in messages.
        input: the input tensor.
        empty_ok: whether C, H and W may be 0 (pooling requires them non-zero; N may be 0).
    """
    x = check_tensor(op, "input", input)
    if x.dim() not in (3, 4):
        raise ReferenceArgumentError(
            f"{op}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {tuple(x.shape)}."
        )
    if not empty_ok and 0 in x.shape[-3:]:
        raise ReferenceArgumentError(
            f"{op}: input must have non-zero C, H and W (only N may be 0), got shape {tuple(x.shape)}."
        )
    return (x.unsqueeze(0), True) if x.dim() == 3 else (x, False)


def _check_dtypes(op: str, **tensors: torch.Tensor | None) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{name} {str(d).removeprefix('torch.')}" for name, d in dtypes.items())
        raise ReferenceArgumentError(
            f"{op}: {', '.join(dtypes)} must share one dtype, got {got}; "
            f"convert them, e.g. weight.to(input.dtype)."
        )


@dataclass(frozen=True)
class ConvGeometry:
    """Normalised convolution arguments.

    Attributes:
        kernel: ``(kH, kW)``.
        stride: ``(sH, sW)``.
        dilation: ``(dH, dW)``.
        pad: zeros added ``(top, bottom, left, right)``; "same" may pad one more at the end.
        out_size: ``(H_out, W_out)``.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad: tuple[int, int, int, int]
    out_size: tuple[int, int]


def _conv_padding(
    op: str,
    padding: object,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    kernel: tuple[int, int],
) -> tuple[int, int, int, int]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ReferenceArgumentError(
                f"{op}: padding string must be 'same' or 'valid', got {padding!r}."
            )
        if stride != (1, 1):
            raise ReferenceArgumentError(
                f"{op}: padding='same' needs stride 1, got stride={stride}; "
                f"give an explicit padding for strided convolutions."
            )
        # Like torch: total padding d*(k-1); an odd total puts the extra zero at the end.
        (th, tw) = (d * (k - 1) for d, k in zip(dilation, kernel))
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = as_pair(op, "padding", padding, minimum=0)
    return (ph, ph, pw, pw)


def _check_conv_shapes(
    op: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: object
) -> None:
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"{op}: groups must be an int, got {type(groups).__name__}.")
    if groups < 1:
        raise ReferenceArgumentError(f"{op}: groups must be an int >= 1, got {groups}.")
    if weight.dim() != 4:
        raise ReferenceArgumentError(
            f"{op}: weight must be 4-D (out_channels, in_channels / groups, kH, kW), "
            f"got shape {tuple(weight.shape)}."
        )
    c_out, c_per_group, kh, kw = weight.shape
    if c_out < 1 or kh < 1 or kw < 1:
        raise ReferenceArgumentError(
            f"{op}: weight must have at least one output channel and a kernel of at least 1 x 1, "
            f"got shape {tuple(weight.shape)}."
        )
    if c_out % groups:
        raise ReferenceArgumentError(
            f"{op}: the weight's {c_out} output channels (weight.shape[0]) must be divisible by "
            f"groups={groups}."
        )
    if x.shape[1] != c_per_group * groups:
        raise ReferenceArgumentError(
            f"{op}: input has {x.shape[1]} channels but the weight expects "
            f"{c_per_group * groups} ({c_per_group} per group x groups={groups})."
        )
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ReferenceArgumentError(
            f"{op}: bias must be 1-D with one value per output channel ({c_out},), "
            f"got shape {tuple(bias.shape)}."
        )


def conv2d_geometry(
    op: str,
    x: torch.Tensor,
    weight: object,
    bias: object,
    stride: object,
    padding: object,
    dilation: object,
    groups: object,
) -> ConvGeometry:
    """Check the arguments of a 2-D convolution on a batched ``x`` and return its geometry."""
    w = check_tensor(op, "weight", weight)
    b = None if bias is None else check_tensor(op, "bias", bias)
    _check_conv_shapes(op, x, w, b, groups)
    _check_dtypes(op, input=x, weight=w, bias=b)
    kernel = (w.shape[2], w.shape[3])
    strides = as_pair(op, "stride", stride, minimum=1)
    dilations = as_pair(op, "dilation", dilation, minimum=1)
    pad = _conv_padding(op, padding, strides, dilations, kernel)
    padded = (x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3])
    reach = tuple(d * (k - 1) + 1 for d, k in zip(dilations, kernel))
    if padded[0] < reach[0] or padded[1] < reach[1]:
        raise ReferenceArgumentError(
            f"{op}: the dilated kernel {_fmt(reach)} is larger than the padded input "
            f"{_fmt(padded)}; use more padding, a smaller kernel or dilation, or a larger input."
        )
    out = tuple((p - r) // s + 1 for p, r, s in zip(padded, reach, strides))
    return ConvGeometry(kernel, strides, dilations, pad, (out[0], out[1]))


@dataclass(frozen=True)
class PoolGeometry:
    """Normalised pooling arguments.

    Attributes:
        kernel, stride, dilation, padding: ``(height, width)`` pairs as torch reads them.
        pad: ``(top, bottom, left, right)``: the padding, plus at the bottom and right the
            cells that ``ceil_mode`` windows hang over the padded input.
        out_size: ``(H_out, W_out)``.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int]
    pad: tuple[int, int, int, int]
    out_size: tuple[int, int]


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    # torch's pooling_output_shape: floor or ceil of (size + 2p - d(k-1) - 1) / s, plus 1 ...
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    # ... and in ceil_mode the last window must start inside the input or the left padding.
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool2d_geometry(
    op: str,
    x: torch.Tensor,
    kernel_size: object,
    stride: object,
    padding: object,
    dilation: object,
    ceil_mode: bool,
) -> PoolGeometry:
    """Check the arguments of a 2-D pooling on a batched ``x`` and return its geometry."""
    kernel = as_pair(op, "kernel_size", kernel_size, minimum=1)
    empty = stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
    strides = kernel if empty else as_pair(op, "stride", stride, minimum=1)
    dilations = as_pair(op, "dilation", dilation, minimum=1)
    padding_hw = as_pair(op, "padding", padding, minimum=0)
    half = (kernel[0] // 2, kernel[1] // 2)
    if padding_hw[0] > half[0] or padding_hw[1] > half[1]:
        raise ReferenceArgumentError(
            f"{op}: padding {padding_hw} is more than half the kernel size {kernel}; "
            f"it may be at most kernel_size // 2 = {half} in each dimension."
        )
    size = (x.shape[2], x.shape[3])
    out = tuple(
        _pool_out(*args, ceil_mode) for args in zip(size, kernel, strides, padding_hw, dilations)
    )
    if min(out) < 1:
        raise ReferenceArgumentError(
            f"{op}: the output would be empty {_fmt(out)} for input {_fmt(size)}, kernel_size "
            f"{kernel}, stride {strides}, padding {padding_hw} and dilation {dilations}; "
            f"use a smaller kernel or more padding."
        )
    # The last window ends at (out - 1) * s + d * (k - 1); pad the end up to it (ceil_mode).
    ends = [(o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(out, strides, dilations, kernel)]
    bottom, right = (max(p, e - n - p) for e, n, p in zip(ends, size, padding_hw))
    pad = (padding_hw[0], bottom, padding_hw[1], right)
    return PoolGeometry(kernel, strides, dilations, padding_hw, pad, (out[0], out[1]))


def check_linear(input: object, weight: object, bias: object) -> None:
    """Check the arguments of ``linear`` (``f(x) = W x + b`` on the last dimension)."""
    x = check_tensor("linear", "input", input)
    w = check_tensor("linear", "weight", weight)
    b = None if bias is None else check_tensor("linear", "bias", bias)
    if x.dim() < 1:
        raise ReferenceArgumentError(
            "linear: input must have at least 1 dimension (features), got a 0-D tensor."
        )
    if w.dim() not in (1, 2) or (w.dim() == 1 and b is not None):
        raise ReferenceArgumentError(
            f"linear: weight must be 2-D (out_features, in_features) (or 1-D without bias), "
            f"got shape {tuple(w.shape)}{' with a bias' if b is not None else ''}."
        )
    if x.shape[-1] != w.shape[-1]:
        raise ReferenceArgumentError(
            f"linear: input has {x.shape[-1]} features (its last dimension) but the weight "
            f"expects {w.shape[-1]} (weight.shape[-1]); input shape {tuple(x.shape)}, "
            f"weight shape {tuple(w.shape)}."
        )
    _check_dtypes("linear", input=x, weight=w, bias=b)
    # Torch also takes some 2-D biases, inconsistently (by input rank); the formula's b is a vector.
    if b is not None and (b.dim() > 1 or b.numel() not in (1, w.shape[0])):
        raise ReferenceArgumentError(
            f"linear: bias must have shape (out_features,) = ({w.shape[0]},) or hold a single "
            f"value, got shape {tuple(b.shape)}."
        )
