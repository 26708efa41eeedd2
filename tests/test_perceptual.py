"""The perceptual loss: a frozen pretrained network as the loss (transferkit.training.perceptual)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.errors import StageError, UnknownNameError
from transferkit.training.perceptual import PerceptualLoss


@pytest.fixture(scope="module")
def lite0_loss() -> PerceptualLoss:
    return PerceptualLoss("efficientnet_lite0")  # ImageNet weights from the pip package


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_zero_for_identical_images(lite0_loss):
    x = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert float(lite0_loss(x, x.clone())) == 0.0
    assert torch.equal(lite0_loss.distance(x, x), torch.zeros(3))


def test_grows_monotonically_with_noise(lite0_loss):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 48, 48, generator=g)
    noise = torch.randn(x.shape, generator=g)
    values = [float(lite0_loss((x + s * noise).clamp(0, 1), x)) for s in (0.01, 0.05, 0.1, 0.3)]
    assert values[0] > 0
    assert values == sorted(values) and len(set(values)) == len(values), values


def test_gradients_reach_generator_never_loss_net(lite0_loss):
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    before = _snapshot(lite0_loss)
    lite0_loss.train()  # asks for training mode: the loss network must stay in eval mode
    assert not lite0_loss.net.training
    assert all(not m.training for m in lite0_loss.net.modules())
    opt = torch.optim.SGD(generator.parameters(), lr=0.1)
    x, target = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 40, 40)
    for _ in range(2):
        opt.zero_grad()
        lite0_loss(generator(x), target).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
        assert all(p.grad is None for p in lite0_loss.parameters())
        opt.step()
    after = _snapshot(lite0_loss)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics


def test_backbone_object_is_copied_not_frozen_in_place():
    import transferkit as tk

    bb = tk.load_backbone("resnet18")
    loss = PerceptualLoss(bb, stages=["layer1"])
    assert all(p.requires_grad for p in bb.parameters())
    assert loss.stages == ["layer1"] and loss.net is not bb


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(UnknownNameError, match=r"perceptual_backbone: Unknown backbone 'efficientnet_lite9'\. "
                       r"Did you mean .*'efficientnet_lite0'"):
        PerceptualLoss("efficientnet_lite9")


def test_unknown_stage_lists_the_stages(lite0_loss):
    with pytest.raises(StageError, match=r"no feature map 'layer9'.*0: 'stage1' \(1/2\)"):
        PerceptualLoss(lite0_loss.net, stages=["layer9"])
    with pytest.raises(TypeError, match="sequence of stage names"):
        PerceptualLoss(lite0_loss.net, stages="stem")
