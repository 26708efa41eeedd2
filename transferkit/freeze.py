"""``freeze`` / ``unfreeze``: choose which stages of the backbone train.

``freeze(model, upto=s)`` freezes the stages from the input through ``s``;
``unfreeze(model, upto=s)`` makes trainable the stages from the output down through ``s``
(the ULMFiT direction). With no ``upto`` both act on the whole backbone. The head is never
frozen by ``freeze``. With ``bn="eval"`` every BatchNorm in a frozen part stays in inference
mode during training, even after ``model.train()``: its running statistics and its output do
not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .backbones import Backbone
from .backbones._base import count_parameters, is_batchnorm
from .errors import ModelFormatError
from .transfer_model import TransferModel

__all__ = ["freeze", "unfreeze", "FreezeSummary", "freeze_state", "keep_batchnorm_statistics",
           "load_freeze_state"]

_BN_MODES = ("eval", "train")


@dataclass(frozen=True)
class FreezeSummary:
    """What is frozen after a ``freeze``/``unfreeze`` call."""

    trainable: int
    frozen: int
    frozen_stages: tuple[str, ...]
    trainable_stages: tuple[str, ...]
    bn: str

    def __str__(self) -> str:
        return (
            f"trainable {self.trainable:,} params, frozen {self.frozen:,}; frozen stages: "
            f"{list(self.frozen_stages)}; BatchNorm in frozen stages: {self.bn}"
        )


def _backbone(model: nn.Module, verb: str) -> Backbone:
    if isinstance(model, TransferModel):
        return model.backbone
    if isinstance(model, Backbone):
        return model
    raise TypeError(
        f"{verb}: model must be a TransferModel or a transferkit backbone, got "
        f"{type(model).__name__}. Wrap a torchvision model first with "
        "transferkit.replace_head(model, num_classes)."
    )


def _set_stages(backbone: Backbone, stages: list[str], trainable: bool, bn: str) -> None:
    for stage in stages:
        for _, p in backbone.stage_parameters(stage):
            p.requires_grad_(trainable)
        for name, m in backbone.stage_modules(stage):
            if not is_batchnorm(m):
                continue
            if trainable or bn == "train":
                backbone._frozen_bn.discard(name)
                m.train(backbone.training)
            else:
                backbone._frozen_bn.add(name)
                m.eval()


def _summary(model: nn.Module, backbone: Backbone) -> FreezeSummary:
    trainable, frozen = count_parameters(model)
    frozen_stages, trainable_stages = [], []
    for s in backbone.stage_names:
        grads = [p.requires_grad for _, p in backbone.stage_parameters(s)]
        (trainable_stages if any(grads) else frozen_stages).append(s)
    bn = "eval" if backbone._frozen_bn else "train"
    return FreezeSummary(trainable, frozen, tuple(frozen_stages), tuple(trainable_stages), bn)


def freeze(model: nn.Module, upto: str | int | None = None, *, bn: str = "eval"
           ) -> FreezeSummary:
    """Freeze the backbone from the input through stage ``upto`` (all of it when ``None``).

    Args:
        model: a :class:`TransferModel` or a backbone.
        upto: a stage name (``"layer2"`` for a ResNet) or index; see ``backbone.stage_names``.
        bn: ``"eval"`` keeps frozen BatchNorm layers in inference mode during training;
            ``"train"`` leaves them as PyTorch would (running statistics keep updating).

    Returns:
        A :class:`FreezeSummary` with trainable and frozen parameter counts.

    Example:
        >>> import transferkit as tk
        >>> m = tk.replace_head(tk.load_backbone("resnet18"), 3)
        >>> tk.freeze(m, upto="layer3").frozen_stages
        ('stem', 'layer1', 'layer2', 'layer3')
    """
    if bn not in _BN_MODES:
        raise ValueError(f"freeze: bn must be 'eval' or 'train', got {bn!r}.")
    backbone = _backbone(model, "freeze")
    names = backbone.stage_names
    stop = len(names) - 1 if upto is None else backbone.stage_index(upto)
    if upto is None:  # the whole backbone, including anything outside the declared stages
        for p in backbone.parameters():
            p.requires_grad_(False)
    _set_stages(backbone, names[: stop + 1], trainable=False, bn=bn)
    return _summary(model, backbone)


def unfreeze(model: nn.Module, upto: str | int | None = None) -> FreezeSummary:
    """Make the backbone trainable from the output down through stage ``upto`` (all if ``None``).

    Example:
        >>> import transferkit as tk
        >>> m = tk.replace_head(tk.load_backbone("resnet18"), 3)
        >>> _ = tk.freeze(m)
        >>> tk.unfreeze(m, upto="layer4").trainable_stages
        ('layer4',)
    """
    backbone = _backbone(model, "unfreeze")
    names = backbone.stage_names
    start = 0 if upto is None else backbone.stage_index(upto)
    if upto is None:
        for p in backbone.parameters():
            p.requires_grad_(True)
    _set_stages(backbone, names[start:], trainable=True, bn="train")
    return _summary(model, backbone)


# -- the freeze state as data: the one format save and checkpoints share ----------------------
def freeze_state(model: TransferModel) -> dict[str, list[str]]:
    """What is frozen, as JSON-ready data: ``{"parameters": [...], "batchnorm_eval": [...]}``.

    ``parameters`` names the model's parameters that do not train; ``batchnorm_eval`` the
    backbone's BatchNorm layers kept in eval mode. :func:`load_freeze_state` restores it.

    Example:
        >>> import transferkit as tk
        >>> m = tk.replace_head(tk.load_backbone("resnet18"), 3)
        >>> _ = tk.freeze(m)
        >>> freeze_state(m)["batchnorm_eval"][:2]
        ['bn1', 'layer1.0.bn1']
    """
    return {"parameters": [n for n, p in model.named_parameters() if not p.requires_grad],
            "batchnorm_eval": sorted(model.backbone._frozen_bn)}


def load_freeze_state(model: TransferModel, state: Any, *, source: str = "the freeze state"
                      ) -> None:
    """Restore a :func:`freeze_state`: every listed parameter frozen, every other one trainable.

    Everything is checked first (``source`` names the file in the messages): a damaged or
    foreign state raises :class:`~transferkit.errors.ModelFormatError` and changes nothing.
    """
    params = dict(model.named_parameters())
    modules = dict(model.backbone.named_modules())
    names = state.get("parameters") if isinstance(state, dict) else None
    bns = state.get("batchnorm_eval") if isinstance(state, dict) else None
    if not isinstance(names, list) or not isinstance(bns, list):
        raise ModelFormatError(
            f"{source} is damaged: \"frozen\" must be {{\"parameters\": [names], "
            f"\"batchnorm_eval\": [names]}}, got {state!r}. Save the model again with "
            "transferkit.save()."
        )
    unknown = [n for n in names if n not in params] + [n for n in bns if n not in modules]
    if unknown:
        raise ModelFormatError(
            f"{source} lists frozen layers that the rebuilt model does not have: "
            f"{unknown[:5]} ({len(unknown)} in all). The file does not belong to this "
            "architecture; save the model again with transferkit.save()."
        )
    frozen = set(names)
    for n, p in params.items():
        p.requires_grad_(n not in frozen)
    model.backbone._frozen_bn = set(bns)


def keep_batchnorm_statistics(model: TransferModel) -> None:
    """Keep every BatchNorm layer of the backbone in eval mode (its running statistics as they
    are) while its weights train: lp_ft's second phase with ``bn="eval"``."""
    backbone = _backbone(model, "keep_batchnorm_statistics")
    for name, m in backbone.named_modules():
        if is_batchnorm(m):
            backbone._frozen_bn.add(name)  # Backbone.train() keeps these in eval
            m.eval()
