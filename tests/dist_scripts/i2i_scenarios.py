"""Image-to-image runs shared by ``dense_worker.py i2i_scenarios`` (under torchrun) and
``tests/test_image2image_training.py`` (one process), so that both run exactly the same code.

A tiny encoder without BatchNorm under the ``dense_linear`` head (a 1x1 convolution, no
BatchNorm either): a BatchNorm in train mode normalises each process's own batch, which a
one-process run with the doubled batch cannot reproduce (docs/distributed.md). 3 -> 3
channels, so the model is residual, as the built-in image-to-image tasks are.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import transferkit as tk

N_TRAIN, N_VAL = 16, 7  # N_TRAIN divisible by 2 x per-process batch; N_VAL odd on purpose
BATCH = 4  # per process; the one-process reference uses 2 * BATCH
SIZE = 16


class TinyEncoder(tk.Backbone):
    """Two padded stride-2 conv stages (maps at 1/2 and 1/4), no BatchNorm, 16 px inputs."""

    def __init__(self) -> None:
        super().__init__(name="i2i_tiny", num_features=16,
                         data_config=tk.DataConfig(input_size=(3, SIZE, SIZE),
                                                   resize_size=SIZE))
        self.model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.set_stages({"stem": ("model.0",), "body": ("model.2",)})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (N, 16, 4, 4)


def make_model(seed: int = 0, head: str = "dense_linear") -> tk.TransferModel:
    torch.manual_seed(seed)
    model = tk.replace_head(TinyEncoder(), 3, head=head, task="image2image", seed=seed)
    # the output convolution starts at zero (the identity); move it so that every run
    # trains from a model that is not the baseline already
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return model


def pairs(n: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(blurred, sharp)`` images in [0, 1]: a 2x box-blurred input and its target."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, 3, size, size, generator=g)
    x = F.avg_pool2d(y, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    return x, y


def perceptual_net() -> tk.Backbone:
    """A fixed random encoder as the perceptual loss network (cheap; never trained)."""
    torch.manual_seed(7)
    return TinyEncoder()


# name -> finetune options (besides batch_size); every run is exactly reproducible

def eval_data():
    """What ``evaluate`` scores in the 2-process launch and in its one-process reference."""
    return pairs(N_VAL, 2)

RUNS: dict[str, dict] = {
    "full_l1": {"strategy": "full", "epochs": 2},
    "lp_ft_perceptual": {"strategy": "lp_ft", "probe_epochs": 1, "epochs": 1,
                         "loss": "l1+perceptual", "perceptual_weight": 1.0},
}
COMMON = {"optimizer": "sgd", "lr": 0.5, "augment": False, "progress": False, "seed": 0,
          "channels_last": False}


def finetune(name: str, batch_size: int, **extra) -> tuple[tk.TransferModel, tk.History]:
    model = make_model()
    options = {**COMMON, **RUNS[name], **extra}
    if "perceptual" in options.get("loss", ""):
        options["perceptual_backbone"] = perceptual_net()
    history = tk.finetune(model, pairs(N_TRAIN, 1), pairs(N_VAL, 2), batch_size=batch_size,
                          **options)
    return model, history
