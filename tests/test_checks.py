"""``transferkit._checks``: the one option checker (message shape and error type)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transferkit._checks import check_choice, check_int, check_number


def test_check_int_takes_python_and_numpy_ints_and_returns_an_int():
    assert check_int("f", "n", 3, 1) == 3
    value = check_int("f", "n", np.int64(7), 1, 8)
    assert value == 7 and type(value) is int
    with pytest.raises(TypeError, match=r"f: n must be an int in \[1, 8\], got True \(bool\)\."):
        check_int("f", "n", True, 1, 8)
    with pytest.raises(TypeError, match=r"f: n must be an int >= 1, got 2.0 \(float\)\."):
        check_int("f", "n", 2.0, 1)
    with pytest.raises(ValueError, match=r"f: n must be an int in \[1, 8\], got 9\."):
        check_int("f", "n", 9, 1, 8)


def test_check_number_bounds():
    assert check_number("f", "lr", 1e-3, 0, strict=True) == 1e-3
    assert check_number("f", "p", np.float32(0.5), 0.0, 1.0) == 0.5
    assert check_number("f", "p", 1, 0.0, 1.0) == 1
    with pytest.raises(ValueError, match=r"f: p must be a finite number in \[0.0, 1.0\], got 1.5"):
        check_number("f", "p", 1.5, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"f: p must be a finite number in \(0, 1\], got 0"):
        check_number("f", "p", 0, 0, 1, strict=True)
    with pytest.raises(ValueError, match=r"f: p must be a finite number <= 2, got 3"):
        check_number("f", "p", 3, high=2)
    with pytest.raises(ValueError, match="finite"):
        check_number("f", "p", math.nan, 0.0, 1.0)
    with pytest.raises(TypeError, match=r"f: p must be a number in \[0.0, 1.0\], got '1' \(str\)"):
        check_number("f", "p", "1", 0.0, 1.0)
    with pytest.raises(TypeError, match="got False"):
        check_number("f", "p", False)


def test_check_choice_does_not_take_true_for_one():
    assert check_choice("f", "amp", "bf16", (False, True, "bf16")) == "bf16"
    with pytest.raises(ValueError, match=r"f: k must be one of \[1, 2\], got True\."):
        check_choice("f", "k", True, (1, 2))
