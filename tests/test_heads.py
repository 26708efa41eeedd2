"""Every registered head on a CNN and a transformer backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import transferkit as tk

# Options that keep the heads small in tests (vgg_classifier is 4096 wide by default).
OPTIONS = {"vgg_classifier": {"hidden": 64}, "mlp": {"hidden": (32, 16), "batch_norm": True}}


@pytest.fixture(scope="module")
def cnn():
    return tk.load_backbone("resnet18")


@pytest.fixture(scope="module")
def transformer():
    return tk.load_backbone("vit_b_32", image_size=64)


@pytest.mark.parametrize("head", tk.list_heads(), ids=str)
@pytest.mark.parametrize("which", ["cnn", "transformer"])
def test_every_head_gives_logits(head, which, request):
    backbone = request.getfixturevalue(which)
    model = tk.replace_head(backbone, 7, head=head, **OPTIONS.get(head, {}))
    x = torch.randn(3, 3, 64, 64)
    logits = model(x)
    dense = tk.heads.get_head_spec(head).dense  # per-pixel logits at the input's size
    assert logits.shape == ((3, 7, 64, 64) if dense else (3, 7))
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.head.parameters() if p.requires_grad)


def test_vgg_classifier_is_the_classic_top():
    head = tk.heads.build_head("vgg_classifier", 512, 10)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (512 * 7 * 7, 4096), (4096, 4096), (4096, 10)
    ]
    assert sum(isinstance(m, nn.Dropout) for m in head.modules()) == 2


def test_cosine_head_is_scaled_cosine_similarity():
    head = tk.heads.build_head("cosine", 4, 3, scale=5.0)
    x = torch.randn(2, 4)
    expected = 5.0 * torch.nn.functional.cosine_similarity(
        x[:, None, :], head.weight[None, :, :], dim=-1
    )
    torch.testing.assert_close(head(x), expected)


def test_bad_head_options_are_explained():
    with pytest.raises(TypeError, match=r"does not take these options \['width'\].*accepts"):
        tk.heads.build_head("linear", 8, 2, width=3)
    with pytest.raises(ValueError, match="activation must be one of"):
        tk.heads.build_head("mlp", 8, 2, activation="swish2")
    with pytest.raises(ValueError, match="kind must be one of"):
        tk.heads.build_head("linear", 8, 2, pool="median")
