"""lr_find: Smith's range test on a copy of the model, suggestion at the steepest descent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.lr_find import lr_find

OPTS = dict(batch_size=16, optimizer="sgd", momentum=0.0, weight_decay=0.0, augment=False,
            progress=False, image_size=32, task="regression")


def _problem():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(64, 3, 32, 32, generator=g)
    return X, X.mean(dim=(1, 2, 3)) * 4 - 2  # a linear target of the pixels


def _model() -> tk.TransferModel:
    torch.manual_seed(0)
    return tk.replace_head(tk.load_backbone("resnet18"), num_classes=1)


def test_suggestion_falls_inside_the_range_that_trains_well() -> None:
    """The good range is found by brute force: a linear probe (least squares with SGD) at each
    fixed lr for 5 epochs; lrs that end within 2x the best final loss are "good" (too small
    ones have not converged, too large ones diverge)."""
    X, y = _problem()
    final = {}
    for lr in np.logspace(-4, -1, 7):
        try:
            hist = tk.finetune(_model(), (X, y), strategy="linear_probe", epochs=5,
                               lr=float(lr), schedule="constant", **OPTS)
            final[float(lr)] = hist[-1]["train_loss"]
        except tk.errors.TrainingError:  # diverged
            final[float(lr)] = float("inf")
    best = min(final.values())
    good = [lr for lr, loss in final.items() if loss <= 2 * best]
    assert max(final) not in good and min(final) not in good  # the grid brackets the range
    result = lr_find(_model(), (X, y), start_lr=1e-5, end_lr=100, num_steps=60, skip_start=5,
                     skip_end=3, strategy="linear_probe", **OPTS)
    assert result.stopped_early  # the sweep reached lrs that diverge
    assert min(good) <= result.suggestion <= max(good), (result.suggestion, final)
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses)
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:]))  # exponential ramp


def test_the_model_and_the_global_rng_are_left_exactly_as_they_were(tmp_path) -> None:
    X, y = _problem()
    model = _model()
    tk.freeze(model, upto=1)  # a partly frozen model, as a user may pass it
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(n, p.requires_grad) for n, p in model.named_parameters()]
    modes = [(n, m.training) for n, m in model.named_modules()]
    config = model.backbone.data_config
    rng = torch.get_rng_state()
    result = lr_find(model, (X, y), num_steps=20, skip_start=2, skip_end=2, **OPTS)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == flags
    assert [(n, m.training) for n, m in model.named_modules()] == modes
    assert model.backbone.data_config == config
    result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(start_lr=0), "start_lr must be a number > 0"),
    (dict(start_lr=1.0, end_lr=0.1), "start_lr must be below end_lr"),
    (dict(num_steps=5), "num_steps must be an int >= 10"),
    (dict(strategy="lp_ft"), "strategy must be 'full' or 'linear_probe'"),
    (dict(lr=0.1), "set by the range test itself"),
])
def test_bad_options_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        lr_find(_model(), _problem(), **kwargs)
