"""``replace_head``: put a new head for the target task on a backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .backbones import Backbone
from .backbones.torchvision_models import backbone_from_torchvision
from .errors import NoSpatialFeaturesError
from .heads import HeadSpec, build_head, get_head_spec, list_heads
from .heads._api import check_head_options
from ._tasks import CLASSIFICATION_TASKS, DENSE_TASKS, TASKS
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


def _check_task(task: object, spec: HeadSpec) -> str | None:
    """The model's task for ``spec``'s head: dense heads serve the dense tasks only."""
    if spec.dense:
        if task is None:
            return "segmentation"
        if task not in DENSE_TASKS:
            raise ValueError(
                f"replace_head: the head {spec.name!r} is dense (per-pixel output), so task must "
                f"be one of {list(DENSE_TASKS)}, got {task!r}."
            )
        return str(task)
    if task in DENSE_TASKS:
        dense = [n for n in list_heads() if get_head_spec(n).dense]
        raise ValueError(
            f"replace_head: task {task!r} needs a dense head (one of {dense}), but "
            f"{spec.name!r} is a classification head. Pass head='unet', for example."
        )
    if task is not None and task not in CLASSIFICATION_TASKS:
        raise ValueError(
            "replace_head: task must be None or one of "
            f"{list(TASKS)}, got {task!r}."
        )
    return task  # type: ignore[return-value]


def _head_input(backbone: Backbone, spec: HeadSpec) -> Any:
    """What the head's builder gets: the pooled size, or a dense head's ``feature_info``."""
    if not spec.dense:
        return backbone.num_features
    info = backbone.feature_info
    if not info:
        from .backbones._features import no_maps_message

        raise NoSpatialFeaturesError(
            f"replace_head: the dense head {spec.name!r} needs spatial feature maps. "
            + no_maps_message(backbone)
        )
    return info


def _zero_last_conv(head: nn.Module) -> None:
    """Zero the output convolution of an image-to-image head: the model (residual, see
    ``TransferModel.residual``) then starts as the identity, its baseline, instead of adding
    a random image to its input (gradients still reach that convolution at once)."""
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        nn.init.zeros_(convs[-1].weight)
        if convs[-1].bias is not None:
            nn.init.zeros_(convs[-1].bias)


def replace_head(
    model: nn.Module,
    num_classes: int,
    head: str = "linear",
    *,
    class_names: list[str] | None = None,
    seed: int | None = None,
    task: str | None = None,
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
        seed: draw the head's initial weights from ``torch.manual_seed(seed)`` (the global
            random state is left as it was), so that the same seed gives the same head in any
            process. ``None`` draws from the global random state. ``finetune(seed=...)``
            seeds only the training, so a run is reproducible across processes when both get
            a seed: ``replace_head(..., seed=s)`` then ``finetune(..., seed=s)``.
        task: ``None`` (classification heads: set later by ``finetune``; dense heads:
            ``"segmentation"``), ``"segmentation"`` or ``"image2image"`` (dense heads only;
            for image-to-image ``num_classes`` is the number of output channels), or a
            classification task (``"multiclass"``, ``"multilabel"``, ``"regression"``).
        **head_options: options of that head (``dropout=0.2``, ``hidden=(256,)``, ...).

    A dense head (``"unet"``, ``"fcn"``, ``"deeplabv3"``, ``"dense_linear"``, or one
    registered with ``dense=True``) is built from ``backbone.feature_info`` and gives logits
    ``(N, num_classes, H, W)`` at the input's size; the model's ``task`` is then
    ``"segmentation"`` (or ``"image2image"`` when asked).

    Raises:
        NoSpatialFeaturesError: a dense head on a backbone without spatial feature maps.

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), num_classes=3)
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 3])
        >>> seg = tk.replace_head(tk.load_backbone("resnet18"), num_classes=3, head="unet")
        >>> seg.task, seg(torch.randn(2, 3, 65, 47)).shape
        ('segmentation', torch.Size([2, 3, 65, 47]))
    """
    check_num_classes(num_classes)
    if class_names is not None and (isinstance(class_names, (str, bytes)) or not all(
            isinstance(c, str) for c in class_names)):
        raise TypeError(
            f"replace_head: class_names must be a list of strings, one per class, got "
            f"{class_names!r}" + (" (a single string: write ['a', 'b', 'c'], not 'abc')"
                                  if isinstance(class_names, str) else "") + "."
        )
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"replace_head: class_names has {len(class_names)} names but num_classes is "
            f"{num_classes}; give one name per class."
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"replace_head: seed must be None or an int >= 0, got {seed!r}.")
    if seed is not None and seed < 0:
        raise ValueError(f"replace_head: seed must be None or an int >= 0, got {seed}.")
    spec = get_head_spec(head)  # an unknown head raises here, before anything changes
    task = _check_task(task, spec)
    check_head_options(head, **head_options)  # before _as_backbone edits a torchvision model
    backbone = _as_backbone(model)
    in_features = _head_input(backbone, spec)
    if seed is None:
        new_head = build_head(head, in_features, num_classes, **head_options)
    else:
        with torch.random.fork_rng(devices=[]):  # the head is built on the CPU
            torch.manual_seed(seed)
            new_head = build_head(head, in_features, num_classes, **head_options)
    if task == "image2image":
        _zero_last_conv(new_head)
    return TransferModel(
        backbone, new_head, num_classes, head_name=head, head_options=head_options,
        class_names=class_names, dense=spec.dense, task=task,
    )
