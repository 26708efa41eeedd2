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


def _state(model) -> dict:
    bb = model.backbone
    return {
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "task": getattr(model, "task", None),
        "data_config": bb.data_config,
        "trainable": {n: p.requires_grad for n, p in model.named_parameters()},
        "frozen_bn": set(bb._frozen_bn),
        "training": {n: m.training for n, m in model.named_modules()},
    }


def _assert_same(before: dict, after: dict) -> None:
    assert after["weights"].keys() == before["weights"].keys()
    for k, v in before["weights"].items():
        assert torch.equal(after["weights"][k], v), k
    for key in ("task", "data_config", "trainable", "frozen_bn", "training"):
        assert after[key] == before[key], key


def _bad_inputs():
    X, y = patterns(12, size=16)
    Xn = X.clone()
    Xn[3, 0, 0, 0] = float("nan")
    return {
        "labels_out_of_range": ((X, y + 5), {}, tk.errors.DataError, "label|class"),
        "x_y_lengths_differ": ((X, y[:5]), {}, tk.errors.DataError, "12 samples but y has 5"),
        "wrong_channels": ((torch.rand(12, 2, 16, 16), y), {}, tk.errors.DataError,
                           "2 channels"),
        "nan_pixels": ((Xn, y), {}, tk.errors.DataError, "NaN"),
        "missing_folder": ("/nonexistent/folder", {}, tk.errors.DataError, "does not exist"),
        "early_stopping_metric": ((X, y), {"early_stopping": "val_acuracy"}, ValueError,
                                  "val_acuracy"),
        "early_stopping_without_val": ((X, y), {"early_stopping": "val_loss"}, ValueError,
                                       "Pass val_data"),
        "unknown_option": ((X, y), {"epochz": 2}, TypeError, "epochz"),
        "bad_option_value": ((X, y), {"epochs": -1}, ValueError, "epochs"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_a_failed_finetune_leaves_the_model_as_it_was(case):
    data, opts, error, match = _bad_inputs()[case]
    model = tiny_model()
    tk.freeze(model, "stem")  # some freeze state to keep
    model.task = "regression"  # differs from the call's task, as data_config from image_size
    before = _state(model)
    with pytest.raises(error, match=match):
        tk.finetune(model, data, **{**FAST, "epochs": 1, "image_size": 24, "task": "multiclass",
                                    "strategy": "full", **opts})
    _assert_same(before, _state(model))


def test_early_stopping_metric_is_checked_before_the_first_epoch():
    X, y = patterns(12, size=16)
    model = tiny_model()
    seen = _record_autocast(model)
    with pytest.raises(ValueError, match=r"metric 'val_acuracy' is not recorded.*val_accuracy"):
        tk.finetune(model, (X, y), (X, y), early_stopping="val_acuracy", epochs=2, **FAST)
    assert seen == []  # no forward pass ran


def _verb_calls():
    X, y = patterns(8, size=16)
    return {
        "finetune": lambda **kw: tk.finetune(tiny_model(), (X, y), progress=False, **kw),
        "evaluate": lambda **kw: tk.evaluate(tiny_model(), (X, y), progress=False, **kw),
        "predict": lambda **kw: tk.predict(tiny_model(), X, **kw),
        "rank_backbones": lambda **kw: tk.rank_backbones(["tiny_cnn_test"], (X, y),
                                                         progress=False, **kw),
    }


@pytest.mark.parametrize("verb", list(_verb_calls()))
def test_every_verb_checks_options_alike(verb):
    """One checker (transferkit._checks): a str where an int goes is a TypeError everywhere,
    an int out of range a ValueError, with the same message shape."""
    call = _verb_calls()[verb]
    with pytest.raises(TypeError, match=rf"^{verb}: batch_size must be an int >= 1, got '8' "
                                        r"\(str\)\.$"):
        call(batch_size="8")
    with pytest.raises(ValueError, match=rf"^{verb}: batch_size must be an int >= 1, got 0\.$"):
        call(batch_size=0)
