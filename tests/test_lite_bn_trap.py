"""The BatchNorm momentum trap of EfficientNet-Lite.

The converted TensorFlow weights carry TF's "momentum 0.99" (a decay), which read literally as
PyTorch's momentum becomes 0.01: after fine-tuning in train mode, the running statistics have
barely moved from ImageNet's while the weights have moved a lot, and the model collapses in
eval mode. transferkit sets PyTorch's 0.1. These tests fine-tune the pretrained lite0 in train
mode, switch to eval(), and check that the accuracy holds; the slow one shows that with 0.01
it does not, so the check can fail.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit.datasets import animal_mnist

IMAGE_SIZE = 48


@pytest.fixture(scope="module")
def data():
    return animal_mnist(n_per_class=20, n_per_class_test=10)


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _finetune_then_eval(data, momentum: float | None = None) -> tuple[float, float, float]:
    """Fine-tune lite0 (everything, BatchNorm in train mode); return (train-mode accuracy of
    the last epoch, eval-mode accuracy on the training images, eval-mode test accuracy)."""
    torch.manual_seed(0)
    model = tk.replace_head(tk.load_backbone("efficientnet_lite0", weights="DEFAULT"), 10)
    if momentum is not None:
        for bn in _batchnorms(model):
            bn.momentum = momentum
    history = tk.finetune(model, data.train, strategy="full", epochs=2, lr=2e-3,
                          batch_size=16, image_size=IMAGE_SIZE, augment=False, progress=False)
    model.train()  # as training left it: BatchNorm layers use batch statistics ...
    model.eval()   # ... and now their running statistics
    train_eval = tk.evaluate(model, data.train, progress=False).accuracy
    test_eval = tk.evaluate(model, data.test, progress=False).accuracy
    return history[-1]["train_accuracy"], train_eval, test_eval


def test_lite_batchnorm_momentum_is_pytorch_convention() -> None:
    for variant in (0, 1, 2):
        backbone = tk.load_backbone(f"efficientnet_lite{variant}", weights="DEFAULT")
        moms = {bn.momentum for bn in _batchnorms(backbone)}
        assert moms == {0.1}, f"efficientnet_lite{variant}: BatchNorm momenta {moms}"


@pytest.fixture(scope="module")
def healthy(data):
    return _finetune_then_eval(data)


def test_lite0_after_train_mode_finetune_is_sensible_in_eval_mode(healthy) -> None:
    train_mode, train_eval, test_eval = healthy
    # Chance is 0.10. Eval mode keeps what train mode learnt on the same images (measured:
    # 0.72 in train mode during the last epoch, 0.82 in eval mode after it), and generalises
    # to the held-out images (measured 0.62). With the trap: 0.44 and 0.37.
    assert train_mode > 0.5, f"training itself failed: train accuracy {train_mode:.3f}"
    assert train_eval >= train_mode - 0.1, (train_mode, train_eval)
    assert test_eval > 0.45, f"eval-mode test accuracy {test_eval:.3f}"


@pytest.mark.slow
def test_tf_momentum_falls_into_the_trap(data, healthy) -> None:
    """The control: momentum 0.01 (TF's 0.99 read literally) fails the check above."""
    _, _, healthy_test = healthy
    trap_train_mode, trap_train_eval, trap_test = _finetune_then_eval(data, momentum=0.01)
    assert trap_train_eval < trap_train_mode - 0.1, (trap_train_mode, trap_train_eval)
    assert trap_test < healthy_test - 0.15, (healthy_test, trap_test)
