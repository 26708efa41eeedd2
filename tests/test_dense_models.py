"""Dense models: every backbone's stage maps, and every dense head on a CNN, a ViT and timm.

Shapes over every registered backbone run on the meta device (no memory, no arithmetic);
values and gradients run on small CPU inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit.errors import NoSpatialFeaturesError
from transferkit.heads import get_head_spec, list_heads
from transferkit.heads.unet import _plan

from test_backbones import _heavy

DENSE = [h for h in list_heads() if get_head_spec(h).dense]
SMALL = {"unet": {"decoder_channels": 32}}  # keep the decoders small in tests


@contextmanager
def _weights_on_meta() -> Iterator[None]:
    """Build modules whose parameters and buffers live on the meta device (no memory, no
    initialisation cost) while the constructor's own tensor arithmetic stays on the CPU
    (RegNet's constructor computes its widths with tensors, which meta cannot read back)."""
    reg_p, reg_b = nn.Module.register_parameter, nn.Module.register_buffer

    def register_parameter(self, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), param.requires_grad)
        reg_p(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        reg_b(self, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = reg_p, reg_b


def _params(names):
    return [pytest.param(n, id=n, marks=[pytest.mark.slow] if _heavy(n) else []) for n in names]


@pytest.mark.parametrize("name", _params(tk.list_backbones()))
def test_feature_info_matches_forward_stages(name):
    """feature_info (measured once at the weights' input size) describes the maps that
    forward_stages gives at another size: channels, reductions, shallow to deep, and each
    names the freezing stage it comes from, in order."""
    with _weights_on_meta():
        bb = tk.load_backbone(name, weights=None)
    assert all(p.is_meta for p in bb.parameters())
    info = bb.feature_info
    assert info, f"{name} has no stage maps"
    s = bb.data_config.crop_size
    # Fixed-size models (ViT, MaxViT's window grid) keep their size; the others get a
    # non-square input of another size, so that reductions are checked, not copied.
    h, w = (s, s) if name.startswith(("vit_", "maxvit")) else (s + 64, s + 32)
    x = torch.empty(2, 3, h, w, device="meta")
    bb.eval()  # shapes only: eval-mode BatchNorm is the cheaper meta kernel
    with torch.no_grad():
        maps = bb.forward_stages(x)
    assert len(maps) == len(info)
    for e, m in zip(info, maps):
        r = e["reduction"]
        assert m.shape[:2] == (2, e["num_chs"]), (e, m.shape)
        assert abs(h / m.shape[2] - r) <= 0.2 * r, (e, m.shape)
        assert abs(w / m.shape[3] - r) <= 0.2 * r, (e, m.shape)
    reductions = [e["reduction"] for e in info]
    assert reductions == sorted(set(reductions))  # one map per scale, shallow to deep
    order = [bb.stage_index(e["stage"]) for e in info]
    assert order == sorted(order)
    if bb.feature_format == "map":  # the deepest map is what forward_features gives
        assert info[-1]["num_chs"] == bb.num_features


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0", "swin_t", "vit_b_32",
                                  "timm/resnet10t", "timm/vit_tiny_patch16_224"])
def test_the_stage_of_a_map_is_the_freezing_stage_that_computes_it(name):
    """Freezing through a map's stage freezes everything that computes it; freezing only the
    stages before it does not (one description of the stages, not two)."""
    with _weights_on_meta():
        bb = tk.load_backbone(name, weights=None)
    bb.eval()  # requires_grad flows the same; eval-mode BatchNorm is the cheaper meta kernel
    x = torch.empty(1, 3, bb.data_config.crop_size, bb.data_config.crop_size, device="meta")
    for i, e in enumerate(bb.feature_info):
        k = bb.stage_index(e["stage"])
        tk.freeze(bb, upto=k)
        assert not bb.forward_stages(x)[i].requires_grad, e
        tk.unfreeze(bb)
        if k > 0:
            tk.freeze(bb, upto=k - 1)
            assert bb.forward_stages(x)[i].requires_grad, e
            tk.unfreeze(bb)


@pytest.fixture(scope="module")
def cnn():
    return tk.load_backbone("resnet18")


@pytest.fixture(scope="module")
def vit():
    return tk.load_backbone("vit_b_32", image_size=64)


@pytest.fixture(scope="module")
def timm_cnn():
    pytest.importorskip("timm")
    return tk.load_backbone("timm/resnet10t")


@pytest.mark.parametrize("head", DENSE, ids=str)
@pytest.mark.parametrize("which,size", [("cnn", (65, 47)), ("vit", (64, 64)),
                                        ("timm_cnn", (65, 47))])
def test_every_dense_head_gives_logits_at_the_input_size(head, which, size, request):
    torch.manual_seed(0)
    backbone = request.getfixturevalue(which)
    model = tk.replace_head(backbone, 5, head=head, **SMALL.get(head, {}))
    assert model.task == "segmentation" and model.dense
    x = torch.randn(2, 3, *size)
    logits = model(x)
    assert logits.shape == (2, 5, *size)
    assert torch.isfinite(logits).all()
    model.zero_grad()
    (logits * torch.randn_like(logits)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    # What forward does is forward_head over forward_features (the path a feature cache takes).
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x), size), model(x))


def test_stage_maps_are_the_backbone_own_activations(cnn):
    cnn.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = cnn.forward_stages(x)
        m = cnn.model
        stem = m.relu(m.bn1(m.conv1(x)))
        l1 = m.layer1(m.maxpool(stem))
        torch.testing.assert_close(maps[0], stem)
        torch.testing.assert_close(maps[1], l1)
        assert torch.equal(maps[-1], cnn.forward_features(x))


def test_without_meta_kernels_the_probe_runs_on_the_backbone_and_restores_its_modes(
        monkeypatch):
    from transferkit.backbones import _features

    expected = tk.load_backbone("resnet18").feature_info

    def no_meta(_backbone):
        raise NotImplementedError("no meta kernel")

    monkeypatch.setattr(_features, "_meta_copy", no_meta)
    bb = tk.load_backbone("resnet18").train()
    bb.model.layer1.eval()  # a mode of its own, which the probe must leave as it was
    state = {k: v.clone() for k, v in bb.state_dict().items()}
    assert bb.feature_info == expected
    assert bb.training and bb.model.layer2.training and not bb.model.layer1.training
    assert all(torch.equal(v, bb.state_dict()[k]) for k, v in state.items())  # BN untouched


def test_dense_linear_is_a_per_pixel_linear_probe(cnn):
    model = tk.replace_head(cnn, 3, head="dense_linear").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        deepest = cnn.forward_stages(x)[-1]  # (2, 512, 2, 2)
        conv = model.head.classifier
        per_pixel = torch.einsum("nchw,kc->nkhw", deepest, conv.weight[:, :, 0, 0])
        per_pixel = per_pixel + conv.bias[None, :, None, None]
        expected = nn.functional.interpolate(per_pixel, size=(64, 64), mode="bilinear",
                                             align_corners=False)
        torch.testing.assert_close(model(x), expected)


def test_unet_plan_uses_every_skip_and_ends_at_the_input_size():
    assert _plan([2, 4, 8, 16, 32]) == [(16, 3), (8, 2), (4, 1), (2, 0), (1.0, None)]
    assert _plan([2, 8, 16, 32]) == [(16, 2), (8, 1), (4, None), (2, 0), (1.0, None)]
    assert _plan([16]) == [(8, None), (4, None), (2, None), (1.0, None)]


def test_image2image_task_and_output_channels(cnn):
    model = tk.replace_head(cnn, 3, head="unet", task="image2image", decoder_channels=16)
    assert model.task == "image2image"
    assert model(torch.randn(2, 3, 40, 36)).shape == (2, 3, 40, 36)


def test_classification_heads_keep_their_task(cnn):
    model = tk.replace_head(cnn, 4)
    assert model.task is None and not model.dense  # set by finetune, as before
    assert tk.replace_head(cnn, 4, task="multilabel").task == "multilabel"


def test_task_and_head_must_agree(cnn):
    with pytest.raises(ValueError, match="needs a dense head .*'unet'"):
        tk.replace_head(cnn, 3, head="linear", task="segmentation")
    with pytest.raises(ValueError, match="is dense .*task must be one of"):
        tk.replace_head(cnn, 3, head="unet", task="multiclass")
    with pytest.raises(ValueError, match="task must be None or one of"):
        tk.replace_head(cnn, 3, task="segmentaton")


def test_dense_head_on_a_backbone_without_maps_is_refused():
    @tk.register_backbone("vector_only_test", num_features=8, replace=True)
    def vector_only(weights=None):
        return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 8))

    try:
        bb = tk.load_backbone("vector_only_test")
        model = tk.replace_head(bb, 2)
        head_before = model.head
        with pytest.raises(NoSpatialFeaturesError, match="'unet' needs spatial feature maps.*"
                                                         "no spatial feature map"):
            tk.replace_head(model, 2, head="unet")
        assert model.head is head_before
        with pytest.raises(NoSpatialFeaturesError, match="no spatial feature map"):
            bb.forward_stages(torch.randn(1, 3, 32, 32))
    finally:
        tk.backbones.BACKBONES.remove("vector_only_test")


def test_a_user_dense_head_registers_with_the_same_decorator(cnn):
    @tk.register_head("shallow_probe_test", dense=True, replace=True)
    def shallow_probe(feature_info, num_classes):
        class Probe(nn.Module):
            in_stages = (0,)

            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(feature_info[0]["num_chs"], num_classes, 1)

            def forward(self, features, size):
                return nn.functional.interpolate(self.conv(features[0]), size=size)

        return Probe()

    try:
        model = tk.replace_head(cnn, 2, head="shallow_probe_test")
        assert model.task == "segmentation"
        assert model(torch.randn(1, 3, 33, 31)).shape == (1, 2, 33, 31)
    finally:
        tk.heads.HEADS.remove("shallow_probe_test")


def test_bad_options_leave_a_torchvision_model_as_it_was():
    import torchvision

    net = torchvision.models.resnet18()
    fc = net.fc
    with pytest.raises(TypeError, match="does not take these options \\['decoder_chans'\\]"):
        tk.replace_head(net, 2, head="unet", decoder_chans=8)
    with pytest.raises(ValueError, match="needs a dense head"):
        tk.replace_head(net, 2, task="segmentation")
    assert net.fc is fc  # its classifier was not removed


def test_bad_dense_head_options_are_explained(cnn):
    with pytest.raises(ValueError, match="decoder_channels must be .* or 5 ints"):
        tk.replace_head(cnn, 2, head="unet", decoder_channels=[64, 32])
    with pytest.raises(ValueError, match="atrous_rates must be a list of ints"):
        tk.replace_head(cnn, 2, head="deeplabv3", atrous_rates=[0, 6])
    with pytest.raises(TypeError, match="expected the backbone's feature_info"):
        tk.heads.build_head("fcn", 512, 2)
    model = tk.replace_head(cnn, 2, head="fcn")
    with pytest.raises(ValueError, match="pass size=\\(H, W\\)"):
        model.forward_head(model.forward_features(torch.randn(2, 3, 32, 32)))


@pytest.mark.parametrize("head", DENSE, ids=str)
def test_save_load_gives_identical_logits(head, tmp_path):
    task = "image2image" if head == "unet" else None
    model = tk.replace_head(tk.load_backbone("resnet18"), 3, head=head, task=task,
                            **SMALL.get(head, {}))
    tk.freeze(model)
    model.train()
    model(torch.randn(2, 3, 32, 32))  # move the head's BatchNorm statistics off their init
    model.eval()
    tk.save(model, tmp_path / "m")
    loaded = tk.load(tmp_path / "m")
    assert loaded.task == model.task and loaded.dense
    x = torch.randn(2, 3, 65, 47)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert ([n for n, p in loaded.named_parameters() if p.requires_grad]
            == [n for n, p in model.named_parameters() if p.requires_grad])
