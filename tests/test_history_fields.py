"""History's run-level results (averaged, wise, ...) are declared fields, None until a run sets
them, and survive a JSON round trip through to_dict / from_dict."""

from __future__ import annotations

import json

import pytest
import torch

import transferkit as tk
from transferkit.training.history import History

from _synthetic import patterns, tiny_model

FIELDS = ("stopped_early", "best_epoch", "memory_format", "averaged", "wise")


def test_fields_are_declared_and_documented() -> None:
    h = History()
    assert (h.stopped_early, h.best_epoch, h.memory_format, h.averaged, h.wise) == (
        False, None, [], None, None)
    for name in FIELDS:
        assert f"{name}:" in History.__doc__, f"History's docstring does not describe {name}"


@pytest.fixture(scope="module")
def history() -> History:
    torch.manual_seed(0)
    model = tiny_model(seed=0)
    return tk.finetune(model, patterns(24, size=16, seed=1), patterns(12, size=16, seed=2),
                       strategy="lp_ft", probe_epochs=1, epochs=1, batch_size=12,
                       wise_alpha="auto", ema=0.9, augment=False, progress=False,
                       channels_last=False, seed=0)


def test_a_run_fills_averaged_and_wise(history) -> None:
    assert history.averaged["method"] == "ema" and history.averaged["steps"] > 0
    assert "val_loss" in history.averaged
    assert history.wise["alpha"] in history.wise["sweep"]
    assert len(history.wise["sweep"]) == 11


def test_json_round_trip_keeps_every_field(history) -> None:
    text = json.dumps(history.to_dict())  # JSON-safe: no float keys, no tensors
    back = History.from_dict(json.loads(text))
    assert back.to_list() == history.to_list()
    for name in ("stopped_early", "best_epoch", "memory_format", "averaged"):
        assert getattr(back, name) == getattr(history, name), name
    assert back.wise["alpha"] == history.wise["alpha"]
    assert back.wise["sweep"] == history.wise["sweep"]  # float alphas again
    assert History.from_dict(History().to_dict()).wise is None


def test_from_dict_refuses_what_to_dict_did_not_write() -> None:
    with pytest.raises(TypeError, match="History.from_dict: expected"):
        History.from_dict([{"epoch": 0}])
