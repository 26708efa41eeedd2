"""strategy='lora' through peft: only adapters and head train, base weights bit-identical,
merged outputs equal the adapted ones, save/load keep the (merged) adapters."""

from __future__ import annotations

import pytest
import torch

import transferkit as tk
from transferkit.training.lora import has_lora, merge_lora

pytest.importorskip("peft")

MODELS = [
    pytest.param("resnet18", {}, id="torchvision_resnet18"),
    pytest.param("vit_b_16", dict(image_size=32), id="torchvision_vit_b_16",
                 marks=pytest.mark.slow),
    pytest.param("timm/vit_tiny_patch16_224", dict(img_size=32), id="timm_vit_tiny"),
]


def _plain_key(k: str) -> str:
    return k.replace(".base_layer", "")


@pytest.mark.parametrize("name, kw", MODELS)
def test_lora_trains_only_adapters_and_head_and_merges_exactly(name, kw, tmp_path) -> None:
    if name.startswith("timm/"):
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = tk.replace_head(tk.load_backbone(name, weights=None, **kw), 3, seed=0)
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_params = sum(p.numel() for p in model.head.parameters())
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(8, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    tk.finetune(model, (X, y), strategy="lora", lora_rank=4, epochs=2, batch_size=4, lr=5e-2,
                image_size=32, augment=False, progress=False, channels_last=False)
    assert has_lora(model)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    adapters = {n: p for n, p in trainable.items() if "lora_" in n}
    assert set(trainable) == set(adapters) | {n for n in trainable if n.startswith("head.")}
    assert adapters and sum(p.numel() for p in trainable.values()) == (
        sum(p.numel() for p in adapters.values()) + head_params)
    assert any(float(p.detach().abs().sum()) > 0 for n, p in adapters.items() if "lora_B" in n)
    # the base weights and BatchNorm statistics: bit-identical
    after = {_plain_key(k): v for k, v in model.backbone.state_dict().items() if "lora_" not in k}
    assert set(after) == set(base)
    for k, v in base.items():
        assert torch.equal(after[k], v), k
    # merge: a plain model, same outputs (float32 rounding)
    model.eval()
    x = torch.rand(3, 3, 32, 32, generator=g)
    with torch.no_grad():
        want = model(x)
        merged = merge_lora(model, copy_model=True).eval()
        got = merged(x)
    assert not has_lora(merged) and has_lora(model)
    assert set(merged.backbone.state_dict()) == set(base)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(want, tk.replace_head(tk.load_backbone(name, weights=None, **kw),
                                                    3, seed=0).eval()(x), atol=1e-4)
    # save merges: the loaded plain model gives the same outputs
    if name == "resnet18":
        tk.save(model, tmp_path / "m")
        loaded = tk.load(tmp_path / "m").eval()
        assert not has_lora(loaded)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), want, atol=1e-4, rtol=1e-4)


def test_lora_merge_option_gives_a_plain_model() -> None:
    model = tk.replace_head(tk.load_backbone("resnet18", weights=None), 2, seed=0)
    X, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    tk.finetune(model, (X, y), strategy="lora", lora_merge=True, epochs=1, batch_size=4,
                augment=False, progress=False, channels_last=False)
    assert not has_lora(model)


@pytest.mark.parametrize("opts, err, match", [
    (dict(lora_rank=4), ValueError, "apply to strategy='lora' only"),
    (dict(strategy="lora", lora_rank=0), ValueError, "lora_rank must be an int >= 1"),
    (dict(strategy="lora", lora_alpha=-1), ValueError, "lora_alpha must be a number > 0"),
    (dict(strategy="lora", lora_targets=["layer9"]), ValueError, "no module of the backbone"),
    (dict(strategy="lora", lora_targets=["bn1"]), ValueError, "a BatchNorm2d"),
    (dict(strategy="lora", lora_targets="conv1"), TypeError, "list of module names"),
])
def test_bad_lora_options_refused_model_unchanged(opts, err, match) -> None:
    model = tk.replace_head(tk.load_backbone("resnet18", weights=None), 2, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(err, match=match):
        tk.finetune(model, (torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])),
                    progress=False, **opts)
    assert not has_lora(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_multihead_attention_targets_refused() -> None:
    import torch.nn as nn
    from transferkit.training.lora import check_lora, default_targets
    from transferkit.training.config import FinetuneConfig

    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)
            self.fc = nn.Linear(8, 8)

    model = nn.Module()  # just what check_lora reads: .backbone (with a name)
    model.backbone = Attn()
    model.backbone.name = "attn_test"
    assert default_targets(model.backbone) == ["fc"]  # not attn, not attn.out_proj
    with pytest.raises(ValueError, match="not a MultiheadAttention"):
        check_lora(model, FinetuneConfig(strategy="lora", lora_targets=["attn"]))
    with pytest.raises(ValueError, match="not a MultiheadAttention"):
        check_lora(model, FinetuneConfig(strategy="lora", lora_targets=["attn.out_proj"]))
