"""A short training workload that times how fast this machine trains right now.

It imports nothing but torch, so :mod:`transferkit.cli.openmp` runs this file by its path in
a child process (with another ``OMP_WAIT_POLICY``) without importing transferkit again, and
imports :func:`steps_per_second` to time the running process the same way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
from torch import nn


def steps_per_second(seconds: float) -> float:
    """Training steps per second of a small depthwise-separable CNN (EfficientNet-like
    blocks, batch 16 at 64 px: many short parallel regions, where waiting threads matter),
    timed over at least ``seconds`` and 5 steps after 3 warm-up steps. Leaves torch's global
    random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _timed(_workload(), seconds)


def _workload() -> Callable[[], None]:
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU6()]
    for _ in range(4):
        layers += [nn.Conv2d(32, 32, 3, 1, 1, groups=32), nn.BatchNorm2d(32), nn.ReLU6(),
                   nn.Conv2d(32, 32, 1), nn.BatchNorm2d(32), nn.ReLU6()]
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.randn(16, 3, 64, 64), torch.randint(0, 10, (16,))

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def _timed(step: Callable[[], None], seconds: float) -> float:
    for _ in range(3):
        step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= 5:
            return n / elapsed


if __name__ == "__main__":
    print(steps_per_second(float(sys.argv[1])))
