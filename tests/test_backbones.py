"""Every registered backbone honours the contract (name as test id)."""

from __future__ import annotations

import pytest
import torch
import torchvision

import transferkit as tk

ALL = tk.list_backbones()
TV = tk.list_backbones(exclude="efficientnet_lite*")


def _num_params(name: str) -> int:
    try:
        return torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
    except ValueError:
        return 0


def _heavy(name: str) -> bool:
    # Large models and MaxViT (which needs 224 px) take seconds each on 2 cores.
    return _num_params(name) > 100_000_000 or name.startswith("maxvit")


def _params(names):
    return [pytest.param(n, id=n, marks=[pytest.mark.slow] if _heavy(n) else []) for n in names]


def _vit_patch(name: str) -> int:
    return 14 if name.endswith("_14") else int(name.rsplit("_", 1)[1])


def small_kwargs(name: str) -> dict:
    return {"image_size": 2 * _vit_patch(name)} if name.startswith("vit_") else {}


def small_input(name: str, n: int = 2) -> torch.Tensor:
    """The smallest input each architecture takes: 32 px for most (ViT: two patches a side;
    torchvision's min_size is only conservative for Swin, which pads its windows)."""
    if name.startswith("vit_"):
        size = 2 * _vit_patch(name)
    elif name.startswith("swin"):
        size = 32
    else:
        size = max(32, tk.get_backbone_spec(name).min_input_size)
    return torch.randn(n, 3, size, size)


def test_every_torchvision_classifier_is_registered():
    tv = torchvision.models.list_models(module=torchvision.models)
    assert set(tv) <= set(ALL)


@pytest.mark.parametrize("name", _params(ALL))
def test_backbone_contract(name):
    """Pooled features (N, num_features), finite; backward reaches every trainable parameter;
    the stages partition the parameters; the data config is sane."""
    spec = tk.get_backbone_spec(name)
    bb = tk.load_backbone(name, weights=None, **small_kwargs(name))
    assert bb.num_features == spec.num_features
    x = small_input(name)
    feats = bb.forward_features(x)
    assert feats.ndim == (4 if bb.feature_format == "map" else 2)
    pooled = bb(x)
    assert pooled.shape == (2, bb.num_features)
    assert torch.isfinite(pooled).all()
    (pooled * torch.randn_like(pooled)).sum().backward()
    missing = [n for n, p in bb.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []

    staged = [id(p) for s in bb.stage_names for _, p in bb.stage_parameters(s)]
    assert len(staged) == len(set(staged))  # no parameter in two stages
    assert set(staged) == {id(p) for p in bb.parameters()}  # and none outside them
    assert len(bb.stage_names) >= 2
    cfg = bb.data_config
    assert cfg.in_chans == 3 and len(cfg.mean) == 3 and cfg.resize_size >= cfg.crop_size - 1


@pytest.mark.parametrize("name", [n for n in ALL if not n.startswith("regnet")], ids=str)
def test_pooled_shape_on_the_meta_device(name):
    """Shapes only, no memory and no arithmetic: every backbone at its default input size
    (RegNet's constructor cannot run on the meta device; its contract test covers it)."""
    with torch.device("meta"):
        bb = tk.load_backbone(name)
        size = bb.data_config.crop_size
        out = bb(torch.empty(2, 3, size, size))
    assert out.shape == (2, bb.num_features)
