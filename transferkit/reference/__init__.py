"""Reference implementations of a CNN's three formulas in plain PyTorch.

- convolution (a cross-correlation): ``f(x, y) = sum_{i<k} sum_{j<k} W(i, j) * I(x+i, y+j)``
- max-pooling: ``f(x, y) = max_{(i, j) in R} I(x+i, y+j)`` (and average-pooling)
- the linear layer: ``f(x) = W x + b``

Each function takes the arguments of its ``torch.nn.functional`` twin and gives the same
results, outputs and gradients, built only from indexing, padding, strided views, sums, max
and matmul. See docs/reference-ops.md for the maths beside the code.

Example:
    >>> import torch
    >>> from transferkit.reference import conv2d
    >>> conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), padding="same").shape
    torch.Size([1, 4, 8, 8])
"""

from ._validation import ReferenceArgumentError
from .conv import conv2d, conv2d_loops
from .linear import linear
from .modules import (
    ReferenceAvgPool2d,
    ReferenceConv2d,
    ReferenceLinear,
    ReferenceMaxPool2d,
    to_reference,
    unswappable_layers,
)
from .pool import avg_pool2d, max_pool2d

__all__ = [
    "ReferenceArgumentError",
    "ReferenceAvgPool2d",
    "ReferenceConv2d",
    "ReferenceLinear",
    "ReferenceMaxPool2d",
    "avg_pool2d",
    "conv2d",
    "conv2d_loops",
    "linear",
    "max_pool2d",
    "to_reference",
    "unswappable_layers",
]
