"""replace_head on backbones, TransferModels and plain torchvision classifiers."""

from __future__ import annotations

import pytest
import torch
import torchvision

import transferkit as tk


def test_on_a_backbone_and_on_a_transfer_model():
    bb = tk.load_backbone("resnet18")
    m1 = tk.replace_head(bb, 4)
    assert isinstance(m1, tk.TransferModel) and m1.num_classes == 4
    m2 = tk.replace_head(m1, 2, head="mlp", hidden=8)
    assert m2.backbone is m1.backbone  # only the head changes
    assert m2(torch.randn(2, 3, 64, 64)).shape == (2, 2)


def test_on_plain_torchvision_vgg16_recognises_it():
    vgg = torchvision.models.vgg16()
    model = tk.replace_head(vgg, 10, head="vgg_classifier", hidden=32)
    assert model.backbone.name == "vgg16"
    assert model.backbone.num_features == 512
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), vgg.features(x))
    assert model(x).shape == (1, 10)


def test_repr_says_backbone_weights_head_and_counts():
    model = tk.replace_head(tk.load_backbone("resnet18"), 3, head="linear", dropout=0.1)
    tk.freeze(model)
    text = repr(model)
    assert "backbone='resnet18'" in text and "weights=None" in text
    assert "head=linear(dropout=0.1)" in text
    assert "trainable_params=1,539" in text and "frozen_params=11,176,512" in text


@pytest.mark.parametrize("bad", [0, -3])
def test_num_classes_must_be_positive(bad):
    with pytest.raises(ValueError, match=rf"num_classes must be an int >= 1, got {bad}\."):
        tk.replace_head(tk.load_backbone("resnet18"), bad)


@pytest.mark.parametrize("bad", [2.0, "3", True])
def test_num_classes_must_be_an_int(bad):
    with pytest.raises(TypeError, match="num_classes must be an int >= 1"):
        tk.replace_head(tk.load_backbone("resnet18"), bad)


def test_not_a_model():
    with pytest.raises(TypeError, match="model must be a transferkit backbone"):
        tk.replace_head("resnet18", 3)
    with pytest.raises(TypeError, match="not a torchvision classification architecture"):
        tk.replace_head(torch.nn.Linear(3, 3), 3)
