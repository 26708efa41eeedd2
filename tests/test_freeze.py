"""freeze / unfreeze: what trains, and frozen BatchNorm that really stays frozen."""

from __future__ import annotations

import pytest
import torch

import transferkit as tk
from transferkit.errors import StageError


def _model():
    return tk.replace_head(tk.load_backbone("resnet18"), 3)


def _one_step(model):
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_freeze_whole_backbone_keeps_it_bit_identical():
    model = _model()
    summary = tk.freeze(model)
    assert summary.frozen == sum(p.numel() for p in model.backbone.parameters())
    assert summary.trainable == sum(p.numel() for p in model.head.parameters())
    before_bb, before_head = _snapshot(model.backbone), _snapshot(model.head)
    model.eval()
    model.train()  # calling train() again must not wake frozen BatchNorm up
    _one_step(model)
    after = model.backbone.state_dict()
    for k, v in before_bb.items():  # parameters and running statistics alike
        assert torch.equal(v, after[k]), k
    assert any(not torch.equal(v, model.head.state_dict()[k]) for k, v in before_head.items())


def test_freeze_upto_a_stage():
    model = _model()
    summary = tk.freeze(model, upto="layer2")
    assert summary.frozen_stages == ("stem", "layer1", "layer2")
    assert summary.trainable_stages == ("layer3", "layer4")
    before = _snapshot(model.backbone)
    _one_step(model)
    after = model.backbone.state_dict()
    assert torch.equal(before["model.layer1.0.bn1.running_mean"],
                       after["model.layer1.0.bn1.running_mean"])
    assert torch.equal(before["model.layer2.0.conv1.weight"], after["model.layer2.0.conv1.weight"])
    assert not torch.equal(before["model.layer3.0.bn1.running_mean"],
                           after["model.layer3.0.bn1.running_mean"])
    assert not torch.equal(before["model.layer4.0.conv1.weight"],
                           after["model.layer4.0.conv1.weight"])


def test_stage_index_is_accepted():
    model = _model()
    assert tk.freeze(model, upto=1).frozen_stages == ("stem", "layer1")
    assert tk.freeze(model, upto=-2).frozen_stages == ("stem", "layer1", "layer2", "layer3")


def test_bn_train_lets_running_statistics_move():
    model = _model()
    tk.freeze(model, bn="train")
    before = model.backbone.model.bn1.running_mean.clone()
    _one_step(model)
    assert not torch.equal(before, model.backbone.model.bn1.running_mean)
    assert all(not p.requires_grad for p in model.backbone.parameters())


def test_twice_is_the_same_as_once():
    model = _model()
    s1 = tk.freeze(model, upto="layer3")
    state1 = [p.requires_grad for p in model.parameters()]
    s2 = tk.freeze(model, upto="layer3")
    assert s1 == s2 and state1 == [p.requires_grad for p in model.parameters()]
    u1 = tk.unfreeze(model, upto="layer3")
    u2 = tk.unfreeze(model, upto="layer3")
    assert u1 == u2 and u1.trainable_stages == ("layer3", "layer4")


def test_unfreeze_releases_batchnorm():
    model = _model()
    tk.freeze(model)
    summary = tk.unfreeze(model)
    assert summary.frozen == 0 and summary.bn == "train"
    model.train()
    assert model.backbone.model.bn1.training


def test_unknown_stage_lists_the_stages():
    with pytest.raises(StageError, match=r"has no stage 'layer7'. Its stages, from the input: "
                       r"\['stem', 'layer1', 'layer2', 'layer3', 'layer4'\]"):
        tk.freeze(_model(), upto="layer7")
    with pytest.raises(StageError, match="Stage index 9 is out of range"):
        tk.unfreeze(_model(), upto=9)


def test_bad_arguments():
    with pytest.raises(ValueError, match="bn must be 'eval' or 'train', got 'frozen'"):
        tk.freeze(_model(), bn="frozen")
    with pytest.raises(TypeError, match="model must be a TransferModel or a transferkit backbone"):
        tk.freeze(torch.nn.Linear(2, 2))
