"""The Reference* modules and to_reference against the torch.nn layers and whole networks."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchvision
from torch import nn

import transferkit.reference.conv as conv_module
from transferkit.reference import (
    ReferenceArgumentError,
    ReferenceAvgPool2d,
    ReferenceConv2d,
    ReferenceLinear,
    ReferenceMaxPool2d,
    to_reference,
    unswappable_layers,
)

F64 = torch.float64

CONVS = {
    "plain": dict(in_channels=3, out_channels=4, kernel_size=3),
    "strided_padded": dict(
        in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=(1, 0)
    ),
    "same_dilated": dict(in_channels=4, out_channels=4, kernel_size=3, padding="same", dilation=2),
    "depthwise_no_bias": dict(in_channels=4, out_channels=8, kernel_size=3, groups=4, bias=False),
}


def _assert_same_forward_backward(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    """Same output, and the same gradients of the input and of every parameter."""
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = ours(x_ours), theirs(x_theirs)
    torch.testing.assert_close(out, expected)
    g = torch.randn_like(expected)
    (out * g).sum().backward()
    (expected * g).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(
            p.grad, theirs_params[name].grad, msg=lambda m, n=name: f"{n}: {m}"
        )


def _assert_same_state(ours: nn.Module, theirs: nn.Module) -> None:
    mine, expected = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(expected)
    for key in expected:
        assert torch.equal(mine[key], expected[key]), key


@pytest.mark.parametrize("kwargs", CONVS.values(), ids=CONVS.keys())
def test_conv_from_module_matches_nn_conv(kwargs: dict) -> None:
    conv = nn.Conv2d(**kwargs).to(F64)
    ref = ReferenceConv2d.from_module(conv)
    _assert_same_state(ref, conv)
    _assert_same_forward_backward(ref, conv, torch.randn(2, kwargs["in_channels"], 9, 8, dtype=F64))


@pytest.mark.parametrize("kwargs", CONVS.values(), ids=CONVS.keys())
def test_conv_constructor_matches_nn_conv_init_and_keys(kwargs: dict) -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(**kwargs)
    torch.manual_seed(3)
    ref = ReferenceConv2d(**kwargs)
    assert list(ref.state_dict()) == list(conv.state_dict())
    for key, value in conv.state_dict().items():
        torch.testing.assert_close(ref.state_dict()[key], value)  # same default init
    conv.load_state_dict(ref.state_dict())  # the keys and shapes fit both ways
    ref.load_state_dict(conv.state_dict())


def test_linear_constructor_and_from_module_match_nn_linear() -> None:
    torch.manual_seed(5)
    lin = nn.Linear(6, 3)
    torch.manual_seed(5)
    ref = ReferenceLinear(6, 3)
    for key, value in lin.state_dict().items():
        torch.testing.assert_close(ref.state_dict()[key], value)
    lin = nn.Linear(6, 3, bias=False).to(F64)
    ref = ReferenceLinear.from_module(lin)
    _assert_same_state(ref, lin)
    _assert_same_forward_backward(ref, lin, torch.randn(2, 5, 6, dtype=F64))


def test_from_module_copies_unless_asked_to_share() -> None:
    conv = nn.Conv2d(2, 2, 3)
    copied, shared = (
        ReferenceConv2d.from_module(conv),
        ReferenceConv2d.from_module(conv, share_parameters=True),
    )
    assert shared.weight is conv.weight and shared.bias is conv.bias
    assert copied.weight is not conv.weight
    with torch.no_grad():
        conv.weight.add_(1.0)
    assert torch.equal(shared.weight, conv.weight) and not torch.equal(copied.weight, conv.weight)


@pytest.mark.parametrize(
    "layer",
    [
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.MaxPool2d((2, 3), stride=(1, 2), dilation=2),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.AvgPool2d(2, divisor_override=3),
    ],
    ids=["max", "max_dilated", "avg", "avg_divisor"],
)
def test_pool_from_module_matches_nn_pool(layer: nn.Module) -> None:
    twin = ReferenceMaxPool2d if isinstance(layer, nn.MaxPool2d) else ReferenceAvgPool2d
    ref = twin.from_module(layer)
    assert ref.state_dict() == {} and layer.state_dict() == {}
    _assert_same_forward_backward(ref, layer, torch.randn(2, 3, 9, 10, dtype=F64))


def test_max_pool_module_returns_indices_like_nn() -> None:
    layer = nn.MaxPool2d(2, return_indices=True)
    x = torch.randn(1, 2, 6, 6)
    out, indices = ReferenceMaxPool2d.from_module(layer)(x)
    expected, expected_indices = layer(x)
    torch.testing.assert_close(out, expected)
    assert torch.equal(indices, expected_indices)


def test_reference_conv_refuses_other_padding_modes() -> None:
    with pytest.raises(
        ReferenceArgumentError, match=r"padding_mode must be 'zeros', got 'reflect'"
    ):
        ReferenceConv2d(3, 3, 3, padding_mode="reflect")
    with pytest.raises(
        ReferenceArgumentError, match=r"padding_mode must be 'zeros', got 'circular'"
    ):
        ReferenceConv2d.from_module(nn.Conv2d(3, 3, 3, padding_mode="circular"))
    with pytest.raises(ReferenceArgumentError, match=r"must both be divisible by groups \(2"):
        ReferenceConv2d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match=r"expected an nn.Conv2d, got Linear"):
        ReferenceConv2d.from_module(nn.Linear(2, 2))


def _small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.AvgPool2d(2, ceil_mode=True)),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 5),
    )


def test_to_reference_swaps_every_supported_layer_and_keeps_the_original() -> None:
    net = _small_net().to(F64)
    ref = to_reference(net)
    kinds = [type(m).__name__ for m in ref.modules()]
    assert kinds.count("ReferenceConv2d") == 2 and kinds.count("ReferenceLinear") == 1
    assert kinds.count("ReferenceMaxPool2d") == 1 and kinds.count("ReferenceAvgPool2d") == 1
    assert not any(
        type(m) in (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d) for m in ref.modules()
    )
    assert isinstance(net[0], nn.Conv2d)  # the original is untouched ...
    assert ref[0].weight is not net[0].weight  # ... and shares nothing with the copy
    _assert_same_state(ref, net)
    _assert_same_forward_backward(ref, net, torch.randn(2, 3, 10, 10, dtype=F64))


def test_to_reference_swaps_a_supported_root() -> None:
    conv = nn.Conv2d(2, 3, 3).eval()
    ref = to_reference(conv)
    assert isinstance(ref, ReferenceConv2d) and not ref.training


class _MyConv(nn.Conv2d):
    pass


def test_to_reference_lists_and_leaves_layers_it_cannot_swap() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"), _MyConv(3, 3, 1), nn.Conv2d(3, 2, 1)
    )
    assert unswappable_layers(net) == {
        "0": "padding_mode='reflect': the reference conv2d only pads with zeros",
        "1": "_MyConv is a subclass of nn.Conv2d whose forward may differ; left as it is",
    }
    with pytest.warns(
        UserWarning, match=r"left 2 layer\(s\) as they are: 0: padding_mode='reflect'"
    ):
        ref = to_reference(net)
    assert type(ref[0]) is nn.Conv2d and type(ref[1]) is _MyConv and type(ref[2]) is ReferenceConv2d
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(ref(x), net(x))
    with pytest.raises(
        ReferenceArgumentError, match=r"2 layer\(s\) cannot be swapped .* strict=False"
    ):
        to_reference(net, strict=True)


def test_to_reference_is_silent_when_everything_is_swapped() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_reference(_small_net())
    assert unswappable_layers(_small_net()) == {}


def test_to_reference_rejects_a_non_module() -> None:
    with pytest.raises(TypeError, match=r"model must be an nn.Module, got function"):
        to_reference(lambda x: x)


def _assert_relative_close(out: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Close to ``rtol`` relative to the output's scale (elementwise rtol fails near zero)."""
    torch.testing.assert_close(out, expected, rtol=rtol, atol=rtol * expected.abs().max().item())


@pytest.fixture(scope="module")
def vgg16_features() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).features.eval()


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # non-trivial batch-norm statistics, so that eval mode uses them
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _assert_same_network_output(model: nn.Module, x: torch.Tensor) -> None:
    """float32 to 1e-4 relative, float64 to 1e-10."""
    with torch.no_grad():
        _assert_relative_close(to_reference(model)(x), model(x), rtol=1e-4)
        model64 = copy.deepcopy(model).double()
        torch.testing.assert_close(
            to_reference(model64)(x.double()), model64(x.double()), rtol=1e-10, atol=1e-10
        )


@pytest.mark.parametrize("path", ["default", "shifted"])
def test_vgg16_features_give_the_same_output(
    vgg16_features: nn.Module, path: str, monkeypatch
) -> None:
    if path == "shifted":  # every stride-1 conv on the shifted-matmul path
        monkeypatch.setattr(conv_module, "_SHIFTED_MIN_ELEMENTS", 0)
    ref = to_reference(vgg16_features)
    assert sum(isinstance(m, ReferenceConv2d) for m in ref.modules()) == 13
    assert sum(isinstance(m, ReferenceMaxPool2d) for m in ref.modules()) == 5
    _assert_same_network_output(vgg16_features, torch.randn(2, 3, 32, 32))


def test_resnet18_gives_the_same_output(resnet18: nn.Module) -> None:
    ref = to_reference(resnet18)
    assert sum(isinstance(m, ReferenceConv2d) for m in ref.modules()) == 20
    assert isinstance(ref.fc, ReferenceLinear) and isinstance(ref.maxpool, ReferenceMaxPool2d)
    _assert_same_network_output(resnet18, torch.randn(2, 3, 64, 64))
