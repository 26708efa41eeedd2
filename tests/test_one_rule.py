"""Each rule lives in one function that every verb calls (issue 12, defects 3 and 4).

- the autocast dtype for a device: ``finetune`` and ``evaluate`` run under the same one;
- validation before anything is touched: a ``finetune`` call that raises leaves the model's
  weights, task, data config and freeze state as they were.
"""

from __future__ import annotations

import pytest
import torch

import transferkit as tk
from transferkit._utils import autocast_dtype

from _synthetic import patterns, tiny_model

FAST = dict(progress=False, augment=False, batch_size=8)


def _record_autocast(model) -> list:
    seen: list = []

    def hook(module, args):
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else None)

    model.head.register_forward_pre_hook(hook)
    return seen


@pytest.mark.parametrize("amp", [False, True, "bf16", "fp16"], ids=str)
def test_finetune_and_evaluate_autocast_to_the_same_dtype(amp):
    X, y = patterns(16, size=16)
    model = tiny_model()
    seen = _record_autocast(model)
    tk.finetune(model, (X, y), epochs=1, strategy="full", amp=amp, device="cpu",
                cache_features=False, **FAST)
    in_training = set(seen)
    seen.clear()
    tk.evaluate(model, (X, y), amp=amp, device="cpu", progress=False)
    assert in_training == set(seen) == {autocast_dtype(amp, "cpu")}


def test_autocast_dtype_rule():
    assert autocast_dtype(False, "cuda") is None
    assert autocast_dtype(True, "cuda") == autocast_dtype("fp16", "cuda") == torch.float16
    assert autocast_dtype("bf16", "cuda") == torch.bfloat16
    assert autocast_dtype("fp16", "cpu") == autocast_dtype(True, "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match=r"amp must be one of .* got 'half'"):
        autocast_dtype("half", "cpu")
    with pytest.raises(ValueError, match="got 1"):
        autocast_dtype(1, "cpu")
