"""Optimisers with discriminative learning rates, and per-step schedules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["param_groups", "make_optimizer", "make_scheduler", "SCHEDULES"]

SCHEDULES = ("constant", "cosine", "onecycle")


def param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float,
                 include_backbone: bool, layer_decay: float | None = None
                 ) -> list[dict[str, Any]]:
    """Parameter groups: head and backbone, each split into decayed and not-decayed.

    Biases and normalisation weights (tensors of one dimension) get no weight decay, as in timm.
    Each group carries its real ``lr``, so any torch scheduler works on them.

    With ``layer_decay`` (layer-wise learning-rate decay, as in BEiT and timm), the backbone is
    split by its freezing stages: the deepest stage gets ``lr * backbone_lr_mult * layer_decay``,
    the next ``* layer_decay**2`` and so on down to the stem (depth counted from the head, which
    keeps ``lr``); backbone parameters outside every stage count as the deepest stage.
    ``None`` or ``1.0`` gives the two plain groups.
    """
    groups: list[dict[str, Any]] = []
    parts: list[tuple[str, list[nn.Parameter], float]] = [
        ("head", list(model.head.parameters()), lr)]
    if include_backbone:
        parts += _backbone_parts(model.backbone, lr * backbone_lr_mult, layer_decay)
    for name, params_, group_lr in parts:
        decay = [p for p in params_ if p.ndim > 1]
        no_decay = [p for p in params_ if p.ndim <= 1]
        for params, wd, suffix in ((decay, weight_decay, ""), (no_decay, 0.0, "_no_decay")):
            if params:
                groups.append({"params": params, "lr": group_lr, "weight_decay": wd,
                               "name": name + suffix})
    return groups


def _backbone_parts(backbone: nn.Module, lr: float, layer_decay: float | None
                    ) -> list[tuple[str, list[nn.Parameter], float]]:
    if layer_decay is None or layer_decay == 1.0:
        return [("backbone", list(backbone.parameters()), lr)]
    stages = list(backbone.stage_names)  # shallow to deep
    owned: set[int] = set()
    per_stage: list[list[nn.Parameter]] = []
    for stage in stages:
        params = [p for _, p in backbone.stage_parameters(stage) if id(p) not in owned]
        owned.update(id(p) for p in params)
        per_stage.append(params)
    rest = [p for p in backbone.parameters() if id(p) not in owned]
    per_stage[-1] = per_stage[-1] + rest
    depth = len(stages)
    return [(f"backbone.{stage}", params, lr * layer_decay ** (depth - i))
            for i, (stage, params) in enumerate(zip(stages, per_stage))]


def make_optimizer(spec: str | Callable, groups: list[dict[str, Any]], lr: float,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """``"sgd"`` (momentum 0.9), ``"adamw"``, or a callable taking the parameter groups."""
    if callable(spec):
        return spec(groups)
    if spec == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if spec == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(
        f"finetune: optimizer must be 'sgd', 'adamw' or a callable taking parameter groups, "
        f"got {spec!r}."
    )


def make_scheduler(kind: str, optimizer: torch.optim.Optimizer, total_steps: int,
                   warmup_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-optimiser-step schedule: linear warm-up, then constant or cosine; or one-cycle."""
    total_steps = max(1, total_steps)
    if kind == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        pct = warmup_steps / total_steps if warmup_steps else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=min(max(pct, 1e-3), 0.99)
        )
    if kind not in SCHEDULES:
        raise ValueError(f"finetune: schedule must be one of {list(SCHEDULES)}, got {kind!r}.")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
