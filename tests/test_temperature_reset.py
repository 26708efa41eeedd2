"""A calibrated temperature belongs to the logits it was fitted on: fine-tuning the model again
removes it (with a notice), a finetune call that fails its checks leaves it in place."""

from __future__ import annotations

import pytest
import torch

import transferkit as tk

from _synthetic import patterns, tiny_model

OPTS = dict(strategy="full", epochs=1, batch_size=16, augment=False, progress=False,
            channels_last=False, seed=0)


@pytest.fixture()
def calibrated():
    torch.manual_seed(0)
    model = tiny_model(seed=0)
    train, val = patterns(24, size=16, seed=1), patterns(24, size=16, seed=2)
    tk.finetune(model, train, **OPTS)
    t = tk.calibrate(model, val).temperature
    assert model.temperature == t and t != 1.0  # a real, non-trivial temperature
    return model, train, val


def test_finetune_again_removes_the_stale_temperature(calibrated, capsys) -> None:
    model, train, val = calibrated
    capsys.readouterr()
    tk.finetune(model, train, **OPTS)
    assert model.temperature is None
    assert "calibrated temperature" in capsys.readouterr().err
    report = tk.evaluate(model, val, progress=False)  # raw logits again: no TS metrics
    assert "temperature" not in report.metrics and "ece_uncalibrated" not in report.metrics
    assert tk.calibrate(model, val).temperature == model.temperature  # calibrate again works


def test_finetune_that_fails_its_checks_keeps_the_temperature(calibrated) -> None:
    model, train, _ = calibrated
    t = model.temperature
    bad_y = torch.full_like(train[1], 7)  # label 7 for a 3-class head
    with pytest.raises(ValueError):
        tk.finetune(model, (train[0], bad_y), **OPTS)
    assert model.temperature == t


def test_a_model_never_calibrated_says_nothing(capsys) -> None:
    model = tiny_model(seed=0)
    tk.finetune(model, patterns(24, size=16, seed=1), **OPTS)
    assert getattr(model, "temperature", None) is None
    assert "calibrated temperature" not in capsys.readouterr().err
