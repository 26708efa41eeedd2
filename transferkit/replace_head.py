"""``replace_head``: put a new head for the target task on a backbone."""

from __future__ import annotations

from typing import Any

from torch import nn

from .backbones import Backbone
from .backbones.torchvision_models import backbone_from_torchvision
from .heads import build_head
from .transfer_model import TransferModel

__all__ = ["replace_head"]


def check_num_classes(num_classes: object, where: str = "replace_head") -> int:
    """``num_classes`` if it is an int >= 1, else a clear error."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(
            f"{where}: num_classes must be an int >= 1, got {type(num_classes).__name__} "
            f"{num_classes!r}."
        )
    if num_classes < 1:
        raise ValueError(f"{where}: num_classes must be an int >= 1, got {num_classes}.")
    return num_classes


def _as_backbone(model: object) -> Backbone:
    if isinstance(model, TransferModel):
        return model.backbone
    if isinstance(model, Backbone):
        return model
    if isinstance(model, nn.Module):
        return backbone_from_torchvision(model)
    raise TypeError(
        "replace_head: model must be a transferkit backbone, a TransferModel or a torchvision "
        f"classification model, got {type(model).__name__}."
    )


def replace_head(
    model: nn.Module,
    num_classes: int,
    head: str = "linear",
    *,
    class_names: list[str] | None = None,
    **head_options: Any,
) -> TransferModel:
    """Return a :class:`TransferModel`: ``model``'s backbone with a new head of ``num_classes``.

    Args:
        model: a backbone from :func:`load_backbone`, a :class:`TransferModel` (only the head
            changes; the backbone object is shared, not copied), or a torchvision
            classification model such as ``torchvision.models.vgg16()`` (its own classifier is
            located and replaced in place).
        num_classes: outputs of the new head, an int >= 1.
        head: a registered head name (see :func:`transferkit.list_heads`).
        class_names: optional names of the target classes, kept for ``predict`` and ``save``.
        **head_options: options of that head (``dropout=0.2``, ``hidden=(256,)``, ...).

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), num_classes=3)
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 3])
    """
    check_num_classes(num_classes)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"replace_head: class_names has {len(class_names)} names but num_classes is "
            f"{num_classes}; give one name per class."
        )
    backbone = _as_backbone(model)
    new_head = build_head(head, backbone.num_features, num_classes, **head_options)
    return TransferModel(
        backbone, new_head, num_classes, head_name=head, head_options=head_options,
        class_names=class_names,
    )
