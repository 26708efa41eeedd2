"""Segmentation runs shared by ``dense_worker.py seg_scenarios`` (under torchrun) and
``tests/test_segmentation_distributed.py`` (one process), so that both run exactly the same
code.

A tiny encoder without BatchNorm under the ``dense_linear`` head (a 1x1 convolution on the
deepest map, upsampled): a BatchNorm in train mode normalises each process's own batch, which
a one-process run with the doubled batch cannot reproduce (docs/distributed.md). Every mask
has the same ignored border (255), so each image has as many scored pixels and the mean of
the ranks' per-pixel losses is the one-process mean.
"""

from __future__ import annotations

import torch
from torch import nn

import transferkit as tk

N_TRAIN, N_VAL = 16, 7  # N_TRAIN divisible by 2 x per-process batch; N_VAL odd on purpose
BATCH = 4  # per process; the one-process reference uses 2 * BATCH
SIZE, CLASSES = 16, 3


class TinyEncoder(tk.Backbone):
    """Two padded stride-2 conv stages (maps at 1/2 and 1/4), no BatchNorm, 16 px inputs."""

    def __init__(self) -> None:
        super().__init__(name="seg_tiny", num_features=16,
                         data_config=tk.DataConfig(input_size=(3, SIZE, SIZE),
                                                   resize_size=SIZE))
        self.model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.set_stages({"stem": ("model.0",), "body": ("model.2",)})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (N, 16, 4, 4)


def make_model(seed: int = 0) -> tk.TransferModel:
    torch.manual_seed(seed)
    return tk.replace_head(TinyEncoder(), CLASSES, head="dense_linear", seed=seed)


def data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and masks: the class of a pixel is its brightest channel (learnable), a
    one-pixel border of 255 (ignored) on every mask."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, SIZE, SIZE, generator=g)
    masks = x.argmax(1)  # (N, H, W)
    masks[:, 0], masks[:, -1], masks[:, :, 0], masks[:, :, -1] = 255, 255, 255, 255
    return x, masks


# name -> finetune options (besides batch_size); every run is exactly reproducible

def eval_data():
    """What ``evaluate`` scores in the 2-process launch and in its one-process reference."""
    return data(N_VAL, 2)

RUNS: dict[str, dict] = {
    "full": {"strategy": "full", "epochs": 2},
    # shuffled cached probe: cached and uncached runs must see the same global batches
    "probe_cached": {"strategy": "linear_probe", "epochs": 3},
    "probe_uncached": {"strategy": "linear_probe", "epochs": 3, "cache_features": False},
}
# channels_last fixed: "auto" times the formats, and runs compared across processes must not
# pick differently (the formats round differently)
COMMON = {"optimizer": "sgd", "lr": 0.5, "augment": False, "progress": False, "seed": 0,
          "channels_last": False}


def finetune(name: str, batch_size: int, **extra) -> tuple[tk.TransferModel, tk.History]:
    model = make_model()
    options = {**COMMON, **RUNS[name], **extra}
    history = tk.finetune(model, data(N_TRAIN, 1), data(N_VAL, 2), batch_size=batch_size,
                          **options)
    return model, history
