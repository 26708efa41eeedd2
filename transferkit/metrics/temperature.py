"""Temperature scaling (Guo et al. 2017): the one place a model's temperature is applied.

A calibrated model carries one attribute, ``model.temperature`` (a float > 0, or ``None`` /
absent: uncalibrated). :func:`apply_temperature` divides its multiclass logits by it; both
``evaluate`` (before the report's probabilities, loss and ECE) and ``predict`` (before the
softmax) call it, so the two verbs can never disagree. Dividing by a positive number keeps each
row's argmax: accuracy does not change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["apply_temperature", "clear_temperature", "fit_temperature", "get_temperature"]


def get_temperature(model: Any) -> float | None:
    """``model.temperature`` when set (a positive float), else ``None``."""
    t = getattr(model, "temperature", None)
    return None if t is None else float(t)


def clear_temperature(model: Any) -> float | None:
    """Remove ``model.temperature`` (set it to ``None``); return the one it had, if any.

    ``finetune`` calls it once its checks have passed: training changes the logits, so a
    temperature fitted to the old ones would mis-calibrate the new model. Call
    :func:`transferkit.calibrate` again after fine-tuning.

    Example:
        >>> from types import SimpleNamespace
        >>> m = SimpleNamespace(temperature=1.5)
        >>> clear_temperature(m), m.temperature
        (1.5, None)
    """
    old = get_temperature(model)
    if hasattr(model, "temperature"):
        model.temperature = None
    return old


def apply_temperature(model: Any, logits: Tensor, task: str | None = "multiclass") -> Tensor:
    """``logits / model.temperature`` for a multiclass model that has one, else ``logits``.

    Args:
        model: any model; only its ``temperature`` attribute is read.
        logits: ``(N, K)`` raw outputs.
        task: the task of the outputs; the temperature applies to ``"multiclass"`` only.
    """
    t = get_temperature(model)
    if t is None or task not in (None, "multiclass") or logits.ndim != 2:
        return logits
    return logits / t


def fit_temperature(logits: Tensor, targets: Tensor, *, max_iter: int = 100) -> float:
    """The temperature ``T > 0`` minimising the mean NLL of ``softmax(logits / T)``.

    One parameter, ``log T`` (so ``T`` stays positive), fitted by ``torch.optim.LBFGS`` with a
    strong-Wolfe line search in float64, from ``T = 1``. If the optimum were worse than
    ``T = 1`` (it cannot be, up to rounding), ``1.0`` is returned: the NLL never rises.

    Args:
        logits: ``(N, K)`` validation logits of the uncalibrated model.
        targets: ``(N,)`` class indices.
        max_iter: LBFGS iterations.

    Returns:
        The temperature, a float.

    Example:
        >>> import torch
        >>> y = torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(0))
        >>> logits = 10 * torch.nn.functional.one_hot(y, 3).float()
        >>> logits[:40] = logits[:40].roll(1, dims=1)   # confidently wrong on 20 %
        >>> fit_temperature(logits, y) > 1   # over-confident: softened
        True
    """
    z = logits.detach().double().cpu().clone()  # clone: evaluate's are inference tensors
    y = targets.detach().long().cpu().clone()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def nll(lt: Tensor) -> Tensor:
        return torch.nn.functional.cross_entropy(z / lt.exp(), y)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nll(log_t)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        if not torch.isfinite(log_t) or nll(log_t) > nll(torch.zeros((), dtype=torch.float64)):
            return 1.0
        return float(log_t.exp())
