"""The one option checker every verb uses: one message shape, one rule for the error type.

A value of the wrong type (a ``str`` where an ``int`` goes, a ``bool`` where a number goes)
raises ``TypeError``; a value of the right type out of range or not among the choices raises
``ValueError``. Every message reads ``"<verb>: <option> must be <expected>, got <value>."``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = ["check_choice", "check_int", "check_number"]


def check_int(fn: str, name: str, value: object, low: int | None = None,
              high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; ``TypeError`` for another type (a NumPy
    integer counts as an int; ``bool`` does not).

    Example:
        >>> check_int("evaluate", "batch_size", 8, 1)
        8
    """
    expected = _int_range(low, high)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be {expected}, got {value!r} "
                        f"({type(value).__name__}).")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{fn}: {name} must be {expected}, got {value}.")
    return int(value)


def check_number(fn: str, name: str, value: object, low: float | None = None,
                 high: float | None = None, *, strict: bool = False) -> float:
    """``value`` as a finite real number ``>= low`` (``> low`` when ``strict``) and
    ``<= high`` (a NumPy number counts; ``bool`` does not).

    Example:
        >>> check_number("finetune", "lr", 1e-3, 0, strict=True)
        0.001
    """
    if low is not None and high is not None:
        bound = f" in {'(' if strict else '['}{low}, {high}]"
    elif low is not None:
        bound = f" {'>' if strict else '>='} {low}"
    else:
        bound = "" if high is None else f" <= {high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number{bound}, got {value!r} "
                        f"({type(value).__name__}).")
    if not math.isfinite(value) or (low is not None and (value < low or strict and value == low)
                                    or high is not None and value > high):
        raise ValueError(f"{fn}: {name} must be a finite number{bound}, got {value!r}.")
    return value


def check_choice(fn: str, name: str, value: object, choices: Iterable[object]) -> object:
    """``value`` if it is one of ``choices`` (``True`` is not taken for ``1``), else ``ValueError``.

    Example:
        >>> check_choice("evaluate", "amp", "bf16", (False, True, "bf16", "fp16"))
        'bf16'
    """
    allowed = list(choices)
    if not any(value == c and type(value) is type(c) for c in allowed):
        raise ValueError(f"{fn}: {name} must be one of {allowed}, got {value!r}.")
    return value


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an int in [{low}, {high}]"
    if low is not None:
        return f"an int >= {low}"
    return "an int" if high is None else f"an int <= {high}"
