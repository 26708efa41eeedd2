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


def small_kwargs(name: str) -> dict:
    return {"image_size": 64} if name.startswith("vit_") else {}


def small_input(name: str, n: int = 2) -> torch.Tensor:
    size = max(64, tk.get_backbone_spec(name).min_input_size)
    if name.startswith("vit_"):
        size = 64
    return torch.randn(n, 3, size, size)


def test_every_torchvision_classifier_is_registered():
    tv = torchvision.models.list_models(module=torchvision.models)
    assert set(tv) <= set(ALL)


@pytest.mark.parametrize("name", _params(ALL))
def test_backbone_contract(name):
    """Pooled features (N, num_features), finite; backward reaches every trainable parameter."""
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


@pytest.mark.parametrize("name", _params(ALL))
def test_stages_partition_parameters(name):
    """Every parameter belongs to exactly one stage, and the data config is sane."""
    with torch.device("meta") if not name.startswith("regnet") else torch.device("cpu"):
        bb = tk.load_backbone(name, **small_kwargs(name))
    staged = [id(p) for s in bb.stage_names for _, p in bb.stage_parameters(s)]
    assert len(staged) == len(set(staged))
    assert set(staged) == {id(p) for p in bb.parameters()}
    assert len(bb.stage_names) >= 2
    cfg = bb.data_config
    assert cfg.in_chans == 3 and len(cfg.mean) == 3 and cfg.resize_size >= cfg.crop_size - 1
