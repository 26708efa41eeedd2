"""Training and evaluation runs shared by ``worker.py`` (under torchrun) and
``tests/test_distributed.py`` (one process), so that both run exactly the same code.

The backbone has no BatchNorm: a BatchNorm in train mode normalises each process's own batch,
which a one-process run with the doubled batch cannot reproduce (see docs/distributed.md).
"""

from __future__ import annotations

import torch
from torch import nn

import transferkit as tk

N_TRAIN, N_VAL = 32, 13  # N_TRAIN divisible by 2 x per-process batch; N_VAL odd on purpose
BATCH = 4  # per process; the one-process reference uses 2 * BATCH


class TinyNet(tk.Backbone):
    """Two conv stages, no BatchNorm, 16 x 16 inputs (so preprocessing is only normalisation)."""

    def __init__(self) -> None:
        super().__init__(name="dist_tiny", num_features=16,
                         data_config=tk.DataConfig(input_size=(3, 16, 16), resize_size=16))
        self.model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(),
                                   nn.Conv2d(8, 16, 3), nn.ReLU())
        self.set_stages({"stem": ("model.0",), "body": ("model.2",)})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (N, 16, 5, 5)


def make_model(seed: int = 0) -> tk.TransferModel:
    torch.manual_seed(seed)
    return tk.replace_head(TinyNet(), num_classes=3)


def data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.arange(n) % 3


# name -> finetune options (besides batch_size); every run is exactly reproducible
RUNS: dict[str, dict] = {
    "full": {"strategy": "full", "epochs": 2},
    "lp_ft_cached": {"strategy": "lp_ft", "probe_epochs": 2, "epochs": 2, "shuffle": False},
    "lp_ft": {"strategy": "lp_ft", "probe_epochs": 2, "epochs": 2, "cache_features": False},
    "gradual": {"strategy": "gradual", "epochs": 3},
    # shuffled cached probe: cached and uncached runs must see the same global batches
    "probe_cached": {"strategy": "linear_probe", "epochs": 3},
    "probe_uncached": {"strategy": "linear_probe", "epochs": 3, "cache_features": False},
}
# channels_last fixed: "auto" times the formats, and runs compared across processes must not
# pick differently (the formats round differently)
COMMON = {"optimizer": "sgd", "lr": 0.05, "augment": False, "progress": False, "seed": 0,
          "channels_last": False}


def finetune(name: str, batch_size: int, **extra) -> tuple[tk.TransferModel, tk.History]:
    model = make_model()
    options = {**COMMON, **RUNS.get(name, {}), **extra}
    history = tk.finetune(model, data(N_TRAIN, 1), data(N_VAL, 2), batch_size=batch_size,
                          **options)
    return model, history


class StopAfter:
    """A callback that interrupts training after ``epochs`` epochs (a crash, for resume)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer, record) -> None:
        if record["epoch"] + 1 == self.epochs:
            raise KeyboardInterrupt
