"""finetune against the plain PyTorch training loop: the engine's own cost, as a time ratio.

Both sides train a fresh copy of the same resnet18 (every layer trainable, strategy ``full``)
on the same in-memory ``(X, y)`` tensors for the same epochs, batch size, AdamW with the same
parameter groups and a cosine schedule. The images are already at the crop size and the
backbone's ``resize_size`` equals its crop, so the only preprocessing is the normalisation,
which the plain loop writes out too. The plain loop also reads the loss each step (as any
loop that logs it does). Printed: ``finetune_over_plain_loop`` = finetune / plain
(the median over interleaved rounds), lower is better; 1.00 means no overhead.

Usage::

    python benchmarks/finetune_overhead.py [--repeats 5] [--samples 256] [--size 64] [--threads 1]
"""

from __future__ import annotations

import copy
import math

import torch
from torch.nn import functional as F

from _common import (interleaved, print_results, random_images, ratio, resnet18_at,
                     start, timing_parser)

import transferkit as tk  # noqa: E402  (after _common puts the checkout on the path)


def _plain_groups(model: torch.nn.Module, lr: float, wd: float) -> list[dict]:
    """The groups finetune builds: no weight decay on biases and norm weights."""
    groups = []
    for module in (model.head, model.backbone):
        params = list(module.parameters())
        groups += [{"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": wd},
                   {"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0}]
    return groups


def plain_loop(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int,
               batch_size: int, lr: float = 1e-3, wd: float = 0.01, seed: int = 0) -> float:
    """The loop a user writes by hand; returns the mean loss of the last epoch."""
    mean = torch.tensor(model.backbone.data_config.mean)[:, None, None]
    std = torch.tensor(model.backbone.data_config.std)[:, None, None]
    opt = torch.optim.AdamW(_plain_groups(model, lr, wd), lr=lr)
    steps = epochs * math.ceil(len(X) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(X), generator=g).split(batch_size):
            x = (X[idx] - mean) / std
            loss = F.cross_entropy(model(x), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
    return total / len(X)


def run(repeats: int = 5, samples: int = 256, size: int = 64, batch_size: int = 32,
        epochs: int = 1) -> dict[str, float]:
    """Time finetune and the plain loop in turns; return ``{"finetune_over_plain_loop": r}``."""
    num_classes = 10
    template = resnet18_at(size, num_classes)
    X, y = random_images(samples, size, num_classes)
    sides = {
        "finetune": lambda m: tk.finetune(
            m, (X, y), epochs=epochs, strategy="full", augment=False, batch_size=batch_size,
            lr=1e-3, optimizer="adamw", schedule="cosine", progress=False, device="cpu"),
        "plain": lambda m: plain_loop(m, X, y, epochs=epochs, batch_size=batch_size),
    }
    times = interleaved(sides, repeats, setup=lambda: copy.deepcopy(template))
    return {"finetune_over_plain_loop": ratio(times, "finetune", "plain")}


def main() -> None:
    parser = timing_parser(__doc__, repeats=5)
    args = parser.parse_args()
    start(args)
    print_results(run(args.repeats, args.samples, args.size))

if __name__ == "__main__":
    main()
