"""nn.Module twins of the reference ops, and :func:`to_reference` to swap them into a model.

Each ``Reference*`` module takes the constructor arguments of its ``torch.nn`` twin, holds the
same parameters under the same state-dict keys, and calls the reference op in ``forward``.
``ReferenceConv2d.from_module(conv)`` builds one from an existing layer.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn

from ._validation import IntPair, ReferenceArgumentError, as_pair
from .conv import conv2d
from .linear import linear
from .pool import avg_pool2d, max_pool2d

__all__ = [
    "ReferenceAvgPool2d",
    "ReferenceConv2d",
    "ReferenceLinear",
    "ReferenceMaxPool2d",
    "to_reference",
    "unswappable_layers",
]


def _uniform_(tensor: torch.Tensor, fan_in: int) -> None:
    # torch.nn's default init for conv and linear (kaiming_uniform_ with a=sqrt(5)) is
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the same bound is used for the bias.
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        tensor.uniform_(-bound, bound)


def _parameter(source: torch.Tensor | None, share: bool) -> nn.Parameter | None:
    if source is None or (share and isinstance(source, nn.Parameter)):
        return source
    return nn.Parameter(source.detach().clone(), requires_grad=source.requires_grad)


class ReferenceConv2d(nn.Module):
    """``nn.Conv2d`` computed by :func:`transferkit.reference.conv2d` (zero padding only).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias:
            as for ``nn.Conv2d``; padding may be ``"same"`` or ``"valid"``.
        padding_mode: only ``"zeros"``; other modes are not implemented by the reference.
        device, dtype: where and how the parameters are created.

    Example:
        >>> conv = ReferenceConv2d(3, 8, 3, padding=1)
        >>> conv(torch.randn(1, 3, 16, 16)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair | str = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if padding_mode != "zeros":
            raise ReferenceArgumentError(
                f"ReferenceConv2d: padding_mode must be 'zeros', got {padding_mode!r}; "
                f"keep nn.Conv2d for other padding modes."
            )
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ReferenceArgumentError(
                f"ReferenceConv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must both be divisible by groups ({groups}, an int >= 1)."
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = as_pair("ReferenceConv2d", "kernel_size", kernel_size, minimum=1)
        self.stride = as_pair("ReferenceConv2d", "stride", stride, minimum=1)
        self.padding = (
            padding
            if isinstance(padding, str)
            else as_pair("ReferenceConv2d", "padding", padding, minimum=0)
        )
        self.dilation = as_pair("ReferenceConv2d", "dilation", dilation, minimum=1)
        self.padding_mode = padding_mode
        factory = {"device": device, "dtype": dtype}
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the parameters as ``nn.Conv2d`` does."""
        fan_in = self.weight[0].numel()
        _uniform_(self.weight, fan_in)
        if self.bias is not None:
            _uniform_(self.bias, fan_in)

    @classmethod
    def from_module(cls, module: nn.Conv2d, *, share_parameters: bool = False) -> ReferenceConv2d:
        """Build the twin of ``module`` (same arguments, parameters, device and dtype).

        Args:
            module: an ``nn.Conv2d`` with ``padding_mode="zeros"``.
            share_parameters: reuse ``module``'s Parameter objects instead of copying them.

        Example:
            >>> ref = ReferenceConv2d.from_module(nn.Conv2d(3, 8, 3))
        """
        if not isinstance(module, nn.Conv2d):
            raise TypeError(
                f"ReferenceConv2d.from_module: expected an nn.Conv2d, got {type(module).__name__}."
            )
        ref = cls.__new__(cls)
        nn.Module.__init__(ref)
        for name in (
            "in_channels",
            "out_channels",
            "kernel_size",
            "stride",
            "padding",
            "dilation",
            "groups",
            "padding_mode",
        ):
            setattr(ref, name, getattr(module, name))
        if ref.padding_mode != "zeros":
            raise ReferenceArgumentError(
                f"ReferenceConv2d.from_module: padding_mode must be 'zeros', got {ref.padding_mode!r}."
            )
        ref.weight = _parameter(module.weight, share_parameters)
        ref.bias = _parameter(module.bias, share_parameters)
        return ref.train(module.training)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return conv2d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class ReferenceLinear(nn.Module):
    """``nn.Linear`` computed by :func:`transferkit.reference.linear`.

    Example:
        >>> ReferenceLinear(4, 2)(torch.randn(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the parameters as ``nn.Linear`` does."""
        _uniform_(self.weight, self.in_features)
        if self.bias is not None:
            _uniform_(self.bias, self.in_features)

    @classmethod
    def from_module(cls, module: nn.Linear, *, share_parameters: bool = False) -> ReferenceLinear:
        """Build the twin of ``module``; ``share_parameters`` reuses its Parameter objects."""
        if not isinstance(module, nn.Linear):
            raise TypeError(
                f"ReferenceLinear.from_module: expected an nn.Linear, got {type(module).__name__}."
            )
        ref = cls.__new__(cls)
        nn.Module.__init__(ref)
        ref.in_features, ref.out_features = module.in_features, module.out_features
        ref.weight = _parameter(module.weight, share_parameters)
        ref.bias = _parameter(module.bias, share_parameters)
        return ref.train(module.training)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReferenceMaxPool2d(nn.Module):
    """``nn.MaxPool2d`` computed by :func:`transferkit.reference.max_pool2d` (no parameters).

    Example:
        >>> ReferenceMaxPool2d(2)(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    @classmethod
    def from_module(cls, module: nn.MaxPool2d) -> ReferenceMaxPool2d:
        """Build the twin of ``module``."""
        if not isinstance(module, nn.MaxPool2d):
            raise TypeError(
                f"ReferenceMaxPool2d.from_module: expected an nn.MaxPool2d, got {type(module).__name__}."
            )
        ref = cls(
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.return_indices,
            module.ceil_mode,
        )
        return ref.train(module.training)

    def forward(self, input: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class ReferenceAvgPool2d(nn.Module):
    """``nn.AvgPool2d`` computed by :func:`transferkit.reference.avg_pool2d` (no parameters).

    Example:
        >>> ReferenceAvgPool2d(2)(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair | None = None,
        padding: IntPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    @classmethod
    def from_module(cls, module: nn.AvgPool2d) -> ReferenceAvgPool2d:
        """Build the twin of ``module``."""
        if not isinstance(module, nn.AvgPool2d):
            raise TypeError(
                f"ReferenceAvgPool2d.from_module: expected an nn.AvgPool2d, got {type(module).__name__}."
            )
        ref = cls(
            module.kernel_size,
            module.stride,
            module.padding,
            module.ceil_mode,
            module.count_include_pad,
            module.divisor_override,
        )
        return ref.train(module.training)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


_TWINS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: ReferenceConv2d,
    nn.Linear: ReferenceLinear,
    nn.MaxPool2d: ReferenceMaxPool2d,
    nn.AvgPool2d: ReferenceAvgPool2d,
}


def _why_not(module: nn.Module) -> str | None:
    """Why a conv/linear/pool layer cannot be swapped; None if it can (or is another kind)."""
    family = next((t for t in _TWINS if isinstance(module, t)), None)
    if family is None:
        return None
    if type(module) is not family:
        return (
            f"{type(module).__name__} is a subclass of nn.{family.__name__} whose forward "
            f"may differ; left as it is"
        )
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r}: the reference conv2d only pads with zeros"
    return None


def unswappable_layers(model: nn.Module) -> dict[str, str]:
    """List the conv, linear and pooling layers that :func:`to_reference` would leave as they are.

    Args:
        model: any module.

    Returns:
        ``{qualified name: reason}`` (the root is named ``""``), empty when all can be swapped.

    Example:
        >>> unswappable_layers(nn.Sequential(nn.Conv2d(3, 3, 3, padding_mode="reflect")))
        {'0': "padding_mode='reflect': the reference conv2d only pads with zeros"}
    """
    found = ((name, _why_not(m)) for name, m in model.named_modules())
    return {name: why for name, why in found if why is not None}


def _swap(module: nn.Module) -> nn.Module:
    twin = _TWINS.get(type(module))
    if twin is not None and _why_not(module) is None:
        if twin in (ReferenceConv2d, ReferenceLinear):
            return twin.from_module(module, share_parameters=True)
        return twin.from_module(module)
    for name, child in module.named_children():
        setattr(module, name, _swap(child))
    return module


def to_reference(model: nn.Module, *, strict: bool = False) -> nn.Module:
    """Return a copy of ``model`` with every supported layer swapped for its reference twin.

    ``nn.Conv2d`` (zero padding), ``nn.Linear``, ``nn.MaxPool2d`` and ``nn.AvgPool2d`` are
    swapped; every other module is copied as it is. The original model is not changed.

    Args:
        model: any module (the root itself may be a supported layer).
        strict: raise instead of warning when a conv/linear/pool layer cannot be swapped.

    Returns:
        The converted copy, with the same state-dict keys and values as ``model``.

    Raises:
        ReferenceArgumentError: ``strict`` and some layer cannot be swapped (listed).

    Example:
        >>> ref = to_reference(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2)))
        >>> type(ref[0]).__name__
        'ReferenceConv2d'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"to_reference: model must be an nn.Module, got {type(model).__name__}.")
    skipped = unswappable_layers(model)
    if skipped:
        listing = "; ".join(f"{name or '<root>'}: {why}" for name, why in skipped.items())
        if strict:
            raise ReferenceArgumentError(
                f"to_reference: {len(skipped)} layer(s) cannot be swapped ({listing}); "
                f"pass strict=False to keep them as they are."
            )
        warnings.warn(
            f"to_reference: left {len(skipped)} layer(s) as they are: {listing}.", stacklevel=2
        )
    return _swap(copy.deepcopy(model))
