"""The linear (fully connected) layer in plain PyTorch: ``f(x) = W x + b``.

``x`` is the last dimension of the input (the features), so every row of a batch is
mapped on its own: ``out[..., o] = sum_k W[o, k] * x[..., k] + b[o]``.
"""

from __future__ import annotations

import torch

from ._validation import check_linear

__all__ = ["linear"]


def linear(
    input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply ``f(x) = W x + b`` to the last dimension of ``input``.

    Same arguments and results as ``torch.nn.functional.linear``.

    Args:
        input: ``(*, in_features)``.
        weight: ``(out_features, in_features)`` (or ``(in_features,)`` without bias, which
            gives ``(*)``).
        bias: ``(out_features,)``, a single value, or None.

    Returns:
        ``(*, out_features)``.

    Example:
        >>> linear(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4))
        tensor([[3., 3., 3., 3.],
                [3., 3., 3., 3.]])
    """
    check_linear(input, weight, bias)
    # Rows are x^T, so W x becomes x^T W^T: (*, in) @ (in, out) -> (*, out).
    out = torch.matmul(input, weight.t())
    return out if bias is None else out + bias
