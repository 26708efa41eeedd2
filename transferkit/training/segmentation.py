"""The segmentation task in one place: its losses, its mask checks, its running metric.

Masks are ``(N, H, W)`` integer class indices in ``[0, num_classes)``; pixels labelled
``ignore_index`` (255 by default, VOC's convention) are neither trained on nor scored. The
logits ``(N, K, h, w)`` are resized (bilinear) to the mask's size before the loss, so a mask
is always used at its own resolution.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import DataError
from ..metrics.segmentation import DEFAULT_IGNORE_INDEX, class_map, resize_logits

__all__ = ["SEGMENTATION_LOSSES", "SegmentationLoss", "make_segmentation_loss", "check_masks",
           "pixel_class_weights", "pixel_correct", "DEFAULT_IGNORE_INDEX"]

#: ``loss=`` values of task ``"segmentation"``; the first is the default.
SEGMENTATION_LOSSES = ("ce", "dice", "ce+dice")


def check_masks(masks: Tensor | None, num_classes: int, *, images: Tensor | None = None,
                ignore_index: int | None = DEFAULT_IGNORE_INDEX, where: str = "") -> None:
    """Fail, with what to do, on masks that a segmentation head cannot learn from.

    Args:
        masks: ``(N, H, W)`` integer class indices (``None``: nothing known up front).
        num_classes: classes of the head.
        images: ``(N, C, H, W)`` (or ``(N, H, W)`` grey) images the masks belong to: each mask
            must have its image's height and width.
        ignore_index: the one label allowed outside ``[0, num_classes)``.
        where: prefix for the message (``"validation "``).
    """
    if masks is None:
        return
    if masks.is_floating_point() or masks.dtype == torch.bool:
        raise DataError(
            f"Segmentation {where}masks must be integer class indices, got {masks.dtype}. A float "
            "mask is usually an interpolated or normalised label image: keep the labels as "
            "integers (masks.round().long() if the values are whole numbers) and resize masks "
            "with nearest-neighbour only."
        )
    if masks.ndim != 3:
        raise DataError(
            f"Segmentation {where}masks must have shape (N, H, W) (one class index per pixel), "
            f"got {tuple(masks.shape)}."
        )
    if images is not None:
        hw = tuple(images.shape[-2:])
        if tuple(masks.shape[-2:]) != hw:
            raise DataError(
                f"The {where}masks are {tuple(masks.shape[-2:])} (H, W) but their images are "
                f"{hw}: each mask must have its image's size. Resize the masks with "
                "nearest-neighbour (never interpolate labels), or the images."
            )
    valid = masks if ignore_index is None else masks[masks != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        bad = valid[(valid < 0) | (valid >= num_classes)].unique()[:5].tolist()
        allowed = "" if ignore_index is None else f" (and {ignore_index}, ignored)"
        raise DataError(
            f"Mask labels must be in [0, {num_classes}){allowed} for a head with {num_classes} "
            f"classes; found {bad} in the {where}masks. Relabel them, mark unlabelled pixels "
            f"{ignore_index if ignore_index is not None else 'with ignore_index'}, or rebuild "
            f"the head with replace_head(..., num_classes={int(valid.max()) + 1}, head='unet')."
        )


def pixel_class_weights(masks: Tensor, num_classes: int,
                        ignore_index: int | None = DEFAULT_IGNORE_INDEX) -> Tensor:
    """``"balanced"`` weights from pixel counts: ``total / (K * count_c)`` (absent: count 1)."""
    flat = masks.reshape(-1).long()
    if ignore_index is not None:
        flat = flat[flat != ignore_index]
    counts = torch.bincount(flat, minlength=num_classes)[:num_classes].float()
    return counts.sum() / (num_classes * counts.clamp(min=1))


class SegmentationLoss(nn.Module):
    """Cross-entropy, soft Dice, or their sum, over the pixels not labelled ``ignore_index``.

    Args:
        kind: one of :data:`SEGMENTATION_LOSSES`.
        weight: per-class weights of the cross-entropy (``None``: equal).
        ignore_index: label of pixels left out.
        label_smoothing: of the cross-entropy.
        smooth: added to the Dice numerator and denominator (stable for absent classes).
    """

    def __init__(self, kind: str = "ce", *, weight: Tensor | None = None,
                 ignore_index: int | None = DEFAULT_IGNORE_INDEX, label_smoothing: float = 0.0,
                 smooth: float = 1.0) -> None:
        super().__init__()
        self.kind = kind
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.smooth = smooth
        self.register_buffer("weight", weight if weight is None else weight.float())

    def forward(self, logits: Tensor, masks: Tensor | list[Tensor]) -> Tensor:
        if isinstance(masks, list):  # evaluation masks of different sizes: one at a time
            return torch.stack([self(lo[None], m[None]) for lo, m in zip(logits, masks)]).mean()
        logits = resize_logits(logits, masks.shape[-2:])  # (N, K, H, W)
        masks = masks.long()
        loss = logits.new_zeros(())
        if self.kind in ("ce", "ce+dice"):
            loss = loss + F.cross_entropy(
                logits, masks, weight=self.weight, label_smoothing=self.label_smoothing,
                ignore_index=-100 if self.ignore_index is None else self.ignore_index)
        if self.kind in ("dice", "ce+dice"):
            loss = loss + self._dice(logits, masks)
        return loss

    def _dice(self, logits: Tensor, masks: Tensor) -> Tensor:
        k = logits.shape[1]
        valid = (masks != self.ignore_index) if self.ignore_index is not None else (
            torch.ones_like(masks, dtype=torch.bool))
        probs = logits.softmax(1) * valid[:, None]  # (N, K, H, W)
        onehot = F.one_hot(masks.where(valid, 0), k).permute(0, 3, 1, 2) * valid[:, None]
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        return 1 - ((2 * inter + self.smooth) / (denom + self.smooth)).mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, ignore_index={self.ignore_index}"


def make_segmentation_loss(kind: str | None, *, class_weights: Any = None,
                           label_smoothing: float = 0.0, masks: Tensor | None = None,
                           num_classes: int,
                           ignore_index: int | None = DEFAULT_IGNORE_INDEX) -> SegmentationLoss:
    """The loss of a segmentation run; ``class_weights="balanced"`` counts pixels in ``masks``."""
    weight = None
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"finetune: class_weights must be 'balanced', a sequence or None, "
                             f"got {class_weights!r}.")
        if masks is None:
            raise DataError("class_weights='balanced' counts the pixels of every mask up front: "
                            "pass (X, masks) tensors, or give the weights as a list.")
        weight = pixel_class_weights(masks, num_classes, ignore_index)
    elif class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=torch.float32)
        if weight.shape != (num_classes,):
            raise ValueError(f"finetune: class_weights must have one weight per class "
                             f"({num_classes}), got shape {tuple(weight.shape)}.")
    return SegmentationLoss(kind or SEGMENTATION_LOSSES[0], weight=weight,
                            ignore_index=ignore_index, label_smoothing=label_smoothing)


def pixel_correct(out: Tensor, masks: Tensor | list[Tensor],
                  ignore_index: int | None = DEFAULT_IGNORE_INDEX) -> float:
    """Sum over the batch of each image's pixel accuracy (the trainer divides by images)."""
    if isinstance(masks, list):  # masks of different sizes
        return sum(pixel_correct(o[None], m[None], ignore_index) for o, m in zip(out, masks))
    pred = class_map(resize_logits(out, masks.shape[-2:]))
    valid = masks != ignore_index if ignore_index is not None else torch.ones_like(
        masks, dtype=torch.bool)
    hits = ((pred == masks) & valid).flatten(1).sum(1).float()
    return float((hits / valid.flatten(1).sum(1).clamp(min=1)).sum())

