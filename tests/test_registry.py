"""The generic registry through its two public instances."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit.backbones import BACKBONES
from transferkit.errors import DuplicateNameError, UnknownNameError
from transferkit.heads import HEADS


@pytest.fixture
def scratch_names():
    added: list[tuple] = []
    yield added
    for registry, name in added:
        if name in registry:
            registry.remove(name)


def test_listing_is_sorted_and_filters_with_wildcards():
    names = tk.list_backbones()
    assert names == sorted(names)
    assert tk.list_backbones("resnet*") == [
        "resnet101", "resnet152", "resnet18", "resnet34", "resnet50"
    ]
    assert tk.list_backbones("resnet*", exclude=["resnet1*"]) == ["resnet34", "resnet50"]
    assert tk.list_backbones(["vgg11", "vgg13"]) == ["vgg11", "vgg13"]
    assert tk.list_heads() == sorted(tk.list_heads())
    assert {"linear", "mlp", "vgg_classifier", "cosine"} <= set(tk.list_heads())


def test_unknown_backbone_names_close_matches():
    with pytest.raises(UnknownNameError, match=r"Unknown backbone 'resnet5'\. Did you mean "
                       r"'resnet50'.*See transferkit\.list_backbones\(\)"):
        tk.load_backbone("resnet5")
    with pytest.raises(ValueError):  # a ValueError subclass, catchable as such
        tk.get_backbone_spec("vgg17")


def test_unknown_head_names_close_matches():
    bb = tk.load_backbone("resnet18")
    with pytest.raises(UnknownNameError, match=r"Unknown head 'cosin'\. Did you mean 'cosine'"):
        tk.replace_head(bb, 3, head="cosin")


def test_duplicate_raises_unless_replace(scratch_names):
    @tk.register_head("scratch_head")
    def first(in_features, num_classes):
        return nn.Sequential(tk.heads.GlobalPool(), nn.Linear(in_features, num_classes))

    scratch_names.append((HEADS, "scratch_head"))
    with pytest.raises(DuplicateNameError, match="already registered. Pass replace=True"):
        tk.register_head("scratch_head")(first)
    tk.register_head("scratch_head", replace=True)(first)
    with pytest.raises(DuplicateNameError):
        tk.register_backbone("resnet18")(lambda weights=None: nn.Identity())


def test_names_must_be_lower_snake():
    with pytest.raises(ValueError, match="not a valid name; use lower_snake_case"):
        tk.register_head("MyHead")
    with pytest.raises(TypeError, match="the name must be a str"):
        tk.register_backbone(3)


def test_user_backbone_is_loadable_by_name(scratch_names):
    @tk.register_backbone("scratch_cnn", num_features=8,
                          stages={"stem": ["0"], "conv": ["2"]})
    def scratch_cnn(weights=None):
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3))

    scratch_names.append((BACKBONES, "scratch_cnn"))
    assert "scratch_cnn" in tk.list_backbones("scratch_*")
    bb = tk.load_backbone("scratch_cnn")
    assert bb(torch.randn(2, 3, 16, 16)).shape == (2, 8)
    assert bb.stage_names == ["stem", "conv"]
    model = tk.replace_head(bb, 5, head="mlp", hidden=16)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    summary = tk.freeze(model, upto="stem")
    assert summary.frozen_stages == ("stem",)


def test_user_backbone_without_feature_size_is_explained(scratch_names):
    @tk.register_backbone("scratch_nosize")
    def scratch_nosize(weights=None):
        return nn.Conv2d(3, 4, 3)

    scratch_names.append((BACKBONES, "scratch_nosize"))
    with pytest.raises(ValueError, match="pooled feature size is unknown. Pass num_features"):
        tk.load_backbone("scratch_nosize")


def test_user_backbone_has_no_pretrained_tags(scratch_names):
    @tk.register_backbone("scratch_tags", num_features=4, pretrained_tags=["mine"])
    def scratch_tags(weights=None):
        return nn.Conv2d(3, 4, 3)

    scratch_names.append((BACKBONES, "scratch_tags"))
    with pytest.raises(tk.errors.WeightsError, match=r"no pretrained weights named 'other'\. "
                       r"Available: \['DEFAULT', 'mine'\]"):
        tk.load_backbone("scratch_tags", weights="other")


def test_timm_namespace():
    pytest.importorskip("timm")
    names = tk.list_backbones("timm/resnet1*")
    assert "timm/resnet18" in names and names == sorted(names)
    assert all(n.startswith("timm/") for n in names)
    assert not any(n.startswith("timm/") for n in tk.list_backbones())
    bb = tk.load_backbone("timm/resnet18")
    out = bb(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, bb.num_features) == (2, 512)
    vit = tk.load_backbone("timm/vit_tiny_patch16_224", img_size=64)
    assert vit.forward_features(torch.randn(2, 3, 64, 64)).shape == (2, vit.num_features)
    with pytest.raises(UnknownNameError, match="timm has no model 'resnet5'"):
        tk.load_backbone("timm/resnet5")
    with pytest.raises(tk.errors.WeightsUnavailableError,
                       match=r"'resnet18'.*no earlier download.*weights=<path"):
        tk.load_backbone("timm/resnet18", weights="DEFAULT")


@pytest.mark.parametrize("tag", ["DEFAULT", "tv_in1k"])
def test_timm_weights_come_from_the_download_caches_offline(tmp_path, monkeypatch, tag):
    """Offline (as in every test), timm's pretrained weights are taken from where timm's
    download would have left them: the Hugging Face hub cache for ``DEFAULT`` (hub repository
    timm/resnet18.a1_in1k), torch.hub's checkpoints folder for ``tv_in1k`` (a URL)."""
    timm = pytest.importorskip("timm")
    from huggingface_hub import constants

    torch.manual_seed(3)
    source = timm.create_model("resnet18", num_classes=1000).state_dict()  # with its classifier
    if tag == "DEFAULT":
        from safetensors.torch import save_file

        repo = tmp_path / "hub" / "models--timm--resnet18.a1_in1k"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0123abcd")
        (repo / "snapshots" / "0123abcd").mkdir(parents=True)
        save_file(source, str(repo / "snapshots" / "0123abcd" / "model.safetensors"))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    else:
        (tmp_path / "torchhub" / "checkpoints").mkdir(parents=True)
        torch.save(source, tmp_path / "torchhub" / "checkpoints" / "resnet18-f37072fd.pth")
        monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torchhub"))
    bb = tk.load_backbone("timm/resnet18", weights=tag)
    got = bb.model.state_dict()
    assert set(source) - set(got) == {"fc.weight", "fc.bias"}  # the classifier is dropped
    assert all(torch.equal(got[k], source[k]) for k in got)
    assert bb.weights_tag == tag


# -- backbone_info: facts for choosing ----------------------------------------------------
def test_backbone_info_reports_torchvision_metadata_and_the_hub_cache(tmp_path, monkeypatch):
    import torchvision

    from transferkit.backbones import backbone_info

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (info,) = backbone_info("resnet18")
    meta = torchvision.models.ResNet18_Weights.DEFAULT.meta
    assert (info.name, info.family, info.num_features, info.input_size) == (
        "resnet18", "torchvision", 512, 224)
    w = info.weights
    assert (w.tag, w.num_params, w.imagenet_top1, w.imagenet_top5, w.gmacs, w.file_mb) == (
        "IMAGENET1K_V1", meta["num_params"], meta["_metrics"]["ImageNet-1K"]["acc@1"],
        meta["_metrics"]["ImageNet-1K"]["acc@5"], meta["_ops"], meta["_file_size"])
    assert not w.available and w.where.endswith("resnet18-f37072fd.pth")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"")
    assert backbone_info("resnet18")[0].weights.available  # found in torch.hub's cache


def test_backbone_info_of_the_lites_matches_the_built_models():
    from transferkit.backbones import backbone_info
    from transferkit.backbones.efficientnet_lite import build_efficientnet_lite

    rows = backbone_info("efficientnet_lite*")
    assert [r.name for r in rows] == [f"efficientnet_lite{v}" for v in range(3)]
    for v, r in enumerate(rows):
        built = sum(p.numel() for p in build_efficientnet_lite(v, pretrained=False).parameters())
        # the published count is rounded to 0.1M
        assert abs(built - r.weights.num_params) <= 0.05e6 + 1, (r.name, built)
        assert r.weights.available and r.weights.file_mb > 15  # the pip packages are installed
        assert r.input_size == (224, 240, 260)[v] and r.num_features == 1280
    assert [r.weights.imagenet_top1 for r in rows] == sorted(r.weights.imagenet_top1
                                                             for r in rows)


def test_backbone_info_of_a_backbone_without_known_weights(scratch_names):
    from transferkit.backbones import backbone_info, format_backbone_info

    @tk.register_backbone("scratch_info", num_features=4)
    def scratch_info(weights=None):
        return nn.Conv2d(3, 4, 3)

    scratch_names.append((BACKBONES, "scratch_info"))
    rows = backbone_info(["scratch_info", "resnet18"])
    assert rows[1].weights is None and rows[1].family == "user"
    table = format_backbone_info(rows).splitlines()
    assert table[0].split() == ["backbone", "features", "input", "weights", "params", "top-1",
                                "GMACs", "MB", "offline"]
    assert table[1].split()[:4] == ["resnet18", "512", "224", "IMAGENET1K_V1"]
    assert table[2].split() == ["scratch_info", "4", "224", "-", "-", "-", "-", "-", "-"]
