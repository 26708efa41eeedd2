"""``interpolate_weights``: a model between two copies of one architecture (WiSE-FT)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .training.wise import check_alpha, interpolate_state

__all__ = ["interpolate_weights"]


def interpolate_weights(a: nn.Module | Mapping[str, Tensor], b: nn.Module | Mapping[str, Tensor],
                        alpha: float) -> Any:
    """The weight-space interpolation ``(1 - alpha) * a + alpha * b`` (WiSE-FT).

    Every float tensor of the state dict is interpolated with ``torch.lerp`` (parameters and
    BatchNorm running statistics alike), so ``alpha=0`` gives ``a``'s tensors and ``alpha=1``
    ``b``'s exactly; integer buffers come from the nearer endpoint.

    Args:
        a, b: two models of one architecture (e.g. the zero-shot/probe model and the
            fine-tuned one), or their state dicts.
        alpha: in [0, 1]: the weight of ``b``.

    Returns:
        For two modules a new module: a deep copy of ``b`` (its freeze flags, modes, task and
        class names) holding the interpolated weights; ``a`` and ``b`` are unchanged. For two
        state dicts, the interpolated state dict.

    Example:
        >>> import torch, transferkit as tk
        >>> a = tk.replace_head(tk.load_backbone("resnet18"), 2, seed=0)
        >>> b = tk.replace_head(tk.load_backbone("resnet18"), 2, seed=1)
        >>> mid = tk.interpolate_weights(a, b, 0.5)
        >>> torch.equal(tk.interpolate_weights(a, b, 0.0).state_dict()["backbone.model.conv1.weight"],
        ...             a.state_dict()["backbone.model.conv1.weight"])
        True
    """
    check_alpha(alpha, "interpolate_weights", allow_auto=False)
    modules = isinstance(a, nn.Module), isinstance(b, nn.Module)
    if modules == (True, True):
        out = copy.deepcopy(b)
        out.load_state_dict(interpolate_state(a.state_dict(), b.state_dict(), alpha))
        return out
    if not any(modules) and isinstance(a, Mapping) and isinstance(b, Mapping):
        return interpolate_state(a, b, alpha)
    raise TypeError(f"interpolate_weights: a and b must be two nn.Modules or two state dicts, "
                    f"got {type(a).__name__} and {type(b).__name__}.")
