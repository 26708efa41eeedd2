"""The tasks: their losses, their target checks, and their running training metric.

The classification tasks live here; each dense task keeps its own in one module
(:mod:`transferkit.training.segmentation`, :mod:`transferkit.training.image2image`), and the
functions below dispatch to it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .._tasks import DENSE_TASKS, TASKS, dense_target
from ..errors import DataError
from .segmentation import (DEFAULT_IGNORE_INDEX, SEGMENTATION_LOSSES, check_masks,
                           make_segmentation_loss, pixel_correct)
from .image2image import IMAGE2IMAGE_LOSSES, check_image_targets, make_image2image_loss

__all__ = ["TASKS", "DENSE_TASKS", "LOSSES", "make_loss", "check_targets", "check_class_count",
           "check_loss", "batch_correct", "dense_target", "has_accuracy"]

#: ``finetune(loss=...)``: the values each task accepts; the first is its default.
LOSSES: dict[str, tuple[str, ...]] = {
    "multiclass": ("ce",), "multilabel": ("bce",), "regression": ("mse",),
    "segmentation": SEGMENTATION_LOSSES, "image2image": IMAGE2IMAGE_LOSSES,
}


def has_accuracy(task: str) -> bool:
    """Whether the task's records hold an accuracy (regression and image2image do not)."""
    return task not in ("regression", "image2image")


def check_loss(task: str, loss: str | None) -> None:
    """``loss`` must be ``None`` (the task's default) or one of ``LOSSES[task]``."""
    allowed = LOSSES.get(task, ())
    if loss is not None and loss not in allowed:
        raise ValueError(
            f"finetune: loss {loss!r} does not apply to task {task!r}; it takes one of "
            f"{list(allowed)} (default {allowed[0]!r})."
        )


def check_targets(targets: Tensor | None, task: str, num_classes: int,
                  classes: list[str] | None = None, *, images: Tensor | None = None,
                  ignore_index: int | None = DEFAULT_IGNORE_INDEX) -> None:
    """Fail before training on labels that the head cannot learn (``images``: the inputs,
    when known, for the dense tasks' size checks)."""
    if task == "segmentation":
        return check_masks(targets, num_classes, images=images, ignore_index=ignore_index)
    if task == "image2image":
        return check_image_targets(targets, num_classes, images=images)
    if task == "multiclass" and targets is not None and targets.ndim == 3:
        raise DataError(
            f"The targets have shape {tuple(targets.shape)}: they look like segmentation masks "
            "(N, H, W), but the model has a classification head. Build a dense head, "
            "replace_head(backbone, num_classes, head='unet') (its task is 'segmentation'), "
            "or pass one class index per image."
        )
    if classes is not None and task == "multiclass" and len(classes) != num_classes:
        raise DataError(
            f"The data has {len(classes)} classes ({classes[:5]}{'...' if len(classes) > 5 else ''})"
            f" but the head has {num_classes} outputs. Rebuild the head with "
            f"replace_head(model, num_classes={len(classes)})."
        )
    if task == "multiclass" and num_classes < 2:
        raise DataError(
            f"A multiclass head needs >= 2 classes, got {num_classes}: with one class the "
            "loss is 0 from the start and nothing is learnt. Add images of another class, or "
            "use task='multilabel' / 'regression' for a single output."
        )
    if targets is None:
        return
    if task == "multiclass" and targets.ndim != 1:
        hint = ("they look one-hot: pass y.argmax(1), or task='multilabel' for multi-hot "
                "labels" if targets.ndim == 2 and targets.shape[1] == num_classes else
                "pass one integer class index per sample")
        raise DataError(
            f"Multiclass labels must have shape (N,), one class index per sample; got "
            f"{tuple(targets.shape)}: {hint}."
        )
    if task == "regression":
        width = 1 if targets.ndim == 1 else (targets.shape[1] if targets.ndim == 2 else -1)
        if width != num_classes:
            raise DataError(
                f"Regression targets of shape {tuple(targets.shape)} need a head with {width} "
                f"output(s), but it has {num_classes}. Rebuild the head with "
                f"replace_head(model, num_classes={max(width, 1)}), or reshape the targets to "
                f"(N, {num_classes})."
            )
    if task == "multiclass":
        check_label_range(targets, num_classes)
    elif task == "multilabel" and (targets.ndim != 2 or targets.shape[1] != num_classes):
        raise DataError(
            f"Multilabel targets must have shape (N, {num_classes}) (one 0/1 column per class), "
            f"got {tuple(targets.shape)}."
        )
    if targets.is_floating_point() and not torch.isfinite(targets).all():
        raise DataError("The targets hold NaN or infinite values; clean them before training.")


def check_class_count(targets: Tensor | None) -> None:
    """Multiclass training data must hold at least two distinct labels."""
    if targets is not None and targets.numel() and targets.ndim == 1 and (
            not targets.is_floating_point()) and int(targets.min()) == int(targets.max()):
        raise DataError(
            f"The training data holds one class only (label {int(targets[0])}): a classifier "
            "trained on it learns nothing (the loss goes to 0). Training needs images of at "
            "least two classes."
        )


def check_label_range(y: Tensor, num_classes: int) -> None:
    """Multiclass labels must be integers in ``[0, num_classes)``."""
    if y.is_floating_point():
        raise DataError(
            f"Multiclass labels must be integers, got {y.dtype}. Use task='regression' for "
            "real-valued targets."
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)].unique()[:5].tolist()
        raise DataError(
            f"Labels must be in [0, {num_classes}) for a head with {num_classes} classes; found "
            f"{bad}. Relabel the data, or rebuild the head with replace_head(model, "
            f"num_classes={max(int(y.max()) + 1, num_classes)})."
        )


def make_loss(task: str, *, label_smoothing: float = 0.0, class_weights: Any = None,
              pos_weight: Any = None, targets: Tensor | None = None,
              num_classes: int | None = None, loss: str | None = None,
              ignore_index: int | None = DEFAULT_IGNORE_INDEX,
              perceptual: dict[str, Any] | None = None) -> nn.Module:
    """The loss of ``task``; ``class_weights="balanced"`` uses inverse class frequencies
    (of pixels, for segmentation); ``loss`` picks among ``LOSSES[task]``; ``perceptual``:
    the ``perceptual_*`` options of an image-to-image loss."""
    check_loss(task, loss)
    if task == "image2image":
        return make_image2image_loss(loss, **(perceptual or {}))
    if task == "segmentation":
        return make_segmentation_loss(loss, class_weights=class_weights,
                                      label_smoothing=label_smoothing, masks=targets,
                                      num_classes=int(num_classes or 1),
                                      ignore_index=ignore_index)
    if task == "multiclass":
        weight = None
        if isinstance(class_weights, str):
            if class_weights != "balanced":
                raise ValueError(
                    f"finetune: class_weights must be 'balanced', a sequence or None, got "
                    f"{class_weights!r}."
                )
            if targets is None:
                raise DataError("class_weights='balanced' needs the labels up front: pass a "
                                "dataset with .targets, or (X, y).")
            counts = torch.bincount(targets.long(), minlength=num_classes).float()
            weight = counts.sum() / (len(counts) * counts.clamp(min=1))
        elif class_weights is not None:
            weight = torch.as_tensor(class_weights, dtype=torch.float32)
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    if task == "multilabel":
        pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
        return nn.BCEWithLogitsLoss(pos_weight=pw)
    if task == "regression":
        return _MSE()
    raise ValueError(f"finetune: task must be one of {list(TASKS)}, got {task!r}.")


class _MSE(nn.Module):
    """Mean squared error that accepts a ``(N, 1)`` output for ``(N,)`` targets."""

    def forward(self, out: Tensor, y: Tensor) -> Tensor:
        if out.ndim == 2 and out.shape[1] == 1 and y.ndim == 1:
            out = out[:, 0]
        return nn.functional.mse_loss(out, y.to(out.dtype))


def batch_correct(task: str, out: Tensor, y: Tensor,
                  ignore_index: int | None = DEFAULT_IGNORE_INDEX) -> float:
    """Correct predictions in a batch: top-1 hits, exact multilabel matches at 0.5, or (for
    segmentation) the sum of each image's pixel accuracy."""
    if task == "segmentation":
        return pixel_correct(out, y, ignore_index)
    if task == "multiclass":
        return float((out.argmax(1) == y).sum())
    if task == "multilabel":
        return float(((out > 0) == (y > 0.5)).all(1).sum())
    return float("nan")


def head_is_dense(model: Any) -> bool:
    """Whether ``model``'s head predicts per pixel (``TransferModel.dense``)."""
    return bool(getattr(model, "dense", False))


def check_task_fits_head(task: str, model: Any) -> None:
    """A dense task needs a dense head and a classification task a classification head."""
    dense = head_is_dense(model)
    if task in DENSE_TASKS and not dense:
        raise ValueError(
            f"finetune: task {task!r} predicts per pixel, but the head {model.head_name!r} "
            "is a classification head (one output vector per image). Build a dense head: "
            "replace_head(backbone, num_classes, head='unet') (or 'fcn', 'deeplabv3', "
            "'dense_linear')."
        )
    if dense and task not in DENSE_TASKS:
        raise ValueError(
            f"finetune: the head {model.head_name!r} predicts per pixel, but task is {task!r}. "
            f"Use a dense task ({', '.join(DENSE_TASKS)}; the default for this model) or a "
            "classification head."
        )
