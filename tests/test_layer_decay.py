"""Layer-wise learning-rate decay (BEiT/timm style) in finetune's parameter groups."""

from __future__ import annotations

import pytest
import torch

import transferkit as tk
from transferkit.training.optim import param_groups


def _model(seed: int = 0) -> tk.TransferModel:
    torch.manual_seed(seed)
    return tk.replace_head(tk.load_backbone("resnet18"), num_classes=3)


def test_each_stage_gets_lr_times_decay_to_its_depth_from_the_head() -> None:
    model = _model()
    groups = param_groups(model, 1e-3, 0.01, 0.5, include_backbone=True, layer_decay=0.75)
    stages = model.backbone.stage_names
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 1e-3
    for i, stage in enumerate(stages):
        want = 1e-3 * 0.5 * 0.75 ** (len(stages) - i)
        for suffix in ("", "_no_decay"):
            g = by_name.get(f"backbone.{stage}{suffix}")
            if g is not None:
                assert g["lr"] == pytest.approx(want, rel=1e-12)
    # every trainable parameter sits in exactly one group
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_history_and_optimizer_carry_the_decayed_lrs() -> None:
    model = _model()
    X, y = torch.rand(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    hist = tk.finetune(model, (X, y), strategy="full", epochs=1, batch_size=4, lr=1e-2,
                       layer_decay=0.5, schedule="constant", augment=False, progress=False,
                       channels_last=False)
    lrs = hist[0]["lr"]
    n_stages = len(model.backbone.stage_names)
    assert max(lrs) == pytest.approx(1e-2)
    assert min(lrs) == pytest.approx(1e-2 * 0.5 ** n_stages)


def test_layer_decay_one_is_bit_identical_to_no_decay() -> None:
    X, y = torch.rand(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    states = []
    for decay in (None, 1.0):
        model = _model()
        tk.finetune(model, (X, y), strategy="full", epochs=1, batch_size=4, layer_decay=decay,
                    augment=False, progress=False, channels_last=False, seed=0)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "0.75", True])
def test_bad_layer_decay_is_refused_before_training(bad) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="layer_decay must be None or a number in"):
        tk.finetune(model, (X, y), layer_decay=bad, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
