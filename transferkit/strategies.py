"""Fine-tuning strategies as plans of phases: what is frozen, at which learning rate.

- ``full``: train everything.
- ``linear_probe``: backbone frozen, head only.
- ``lp_ft``: a linear probe until the head converges, then the whole model at a lower backbone
  learning rate (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features").
- ``gradual``: unfreeze stage by stage from the top, one stage per epoch (Howard & Ruder 2018,
  ULMFiT); epoch 0 trains the head alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .backbones import Backbone
from .freeze import freeze, unfreeze

__all__ = ["STRATEGIES", "Phase", "plan_phases", "apply_phase"]

STRATEGIES = ("full", "linear_probe", "lp_ft", "gradual")


@dataclass(frozen=True)
class Phase:
    """One stretch of training with a fixed optimiser.

    Attributes:
        name: ``"full"``, ``"probe"``, ``"finetune"`` or ``"gradual"``.
        epochs: epochs in this phase (at most, for a probe that stops when it converges).
        backbone: ``"frozen"``, ``"trainable"`` or ``"gradual"``.
        backbone_lr_mult: backbone learning rate as a fraction of ``lr``.
        until_converged: stop the phase early when the training loss stops improving.
    """

    name: str
    epochs: int
    backbone: str
    backbone_lr_mult: float = 1.0
    until_converged: bool = False


def plan_phases(strategy: str, epochs: int, probe_epochs: int,
                backbone_lr_mult: float | None) -> list[Phase]:
    """The phases of ``strategy``; ``backbone_lr_mult=None`` takes the strategy's default."""
    if strategy == "full":
        return [Phase("full", epochs, "trainable", _mult(backbone_lr_mult, 1.0))]
    if strategy == "linear_probe":
        return [Phase("probe", epochs, "frozen", 0.0)]
    if strategy == "lp_ft":
        return [
            Phase("probe", probe_epochs, "frozen", 0.0, until_converged=True),
            Phase("finetune", epochs, "trainable", _mult(backbone_lr_mult, 0.1)),
        ]
    if strategy == "gradual":
        return [Phase("gradual", epochs, "gradual", _mult(backbone_lr_mult, 1.0))]
    raise ValueError(f"finetune: strategy must be one of {list(STRATEGIES)}, got {strategy!r}.")


def _mult(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def apply_phase(model: nn.Module, backbone: Backbone, phase: Phase, epoch_in_phase: int,
                bn: str) -> None:
    """Set what trains for ``phase`` at ``epoch_in_phase`` (idempotent)."""
    if phase.backbone == "frozen":
        freeze(model, bn=bn)
    elif phase.backbone == "trainable":
        unfreeze(model)
    else:  # gradual: the top `epoch_in_phase` stages are trainable
        names = backbone.stage_names
        n_open = min(epoch_in_phase, len(names))
        freeze(model, bn=bn)
        if n_open:
            unfreeze(model, upto=names[len(names) - n_open])
