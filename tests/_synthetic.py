"""A small learnable image task: three classes of distinct patterns (shared by tests)."""

from __future__ import annotations

import torch
from torch import nn

import transferkit as tk


def patterns(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``(n, 3, size, size)`` in [0, 1]: a red left half, a blue top half, or a
    green centre square, with noise (separable after global pooling too)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, size, size, generator=g) * 0.3
    y = torch.arange(n) % 3
    h = size // 2
    X[y == 0, 0, :, :h] += 0.6
    X[y == 1, 2, :h, :] += 0.6
    X[y == 2, 1, size // 4:3 * size // 4, size // 4:3 * size // 4] += 0.6
    return X.clamp(0, 1), y


class TinyCNN(nn.Module):
    """A small CNN with BatchNorm and two stages, for fast engine tests."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())

    def forward(self, x):
        return self.body(self.stem(x))


if "tiny_cnn_test" not in tk.list_backbones():
    tk.register_backbone("tiny_cnn_test", num_features=16,
                         data_config=tk.DataConfig(input_size=(3, 16, 16), resize_size=16),
                         stages={"stem": ["stem"], "body": ["body"]})(
        lambda weights=None: TinyCNN())


def tiny_model(num_classes: int = 3, head: str = "linear", **opts) -> tk.TransferModel:
    return tk.replace_head(tk.load_backbone("tiny_cnn_test"), num_classes, head=head, **opts)
