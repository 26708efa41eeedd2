"""The image-to-image task in one place: its losses, its option and target checks.

The model predicts an image ``(N, C, H, W)`` at its input's size, in the target's pixel space:
targets are pixels in ``[0, 1]`` (``uint8`` targets are scaled by 1/255 like the inputs), and
the output is compared with them as it is. Nothing clamps the output during training (a clamp
would stop the gradient of pixels that overshoot); metrics and PNGs clamp it to ``[0, 1]``.

Losses (``finetune(loss=...)``):

- ``"l1"`` (the default): mean absolute pixel error;
- ``"mse"``: mean squared pixel error;
- ``"perceptual"``: the feature distance of :class:`~transferkit.training.perceptual.
  PerceptualLoss` on a frozen pretrained backbone (``perceptual_backbone``, default
  ``"efficientnet_lite0"``; ``perceptual_stages``), times ``perceptual_weight``;
- ``"l1+perceptual"``: their sum, ``l1 + perceptual_weight * perceptual``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import DataError
from .perceptual import DEFAULT_PERCEPTUAL_BACKBONE, PerceptualLoss, check_perceptual_backbone

__all__ = ["IMAGE2IMAGE_LOSSES", "Image2ImageLoss", "make_image2image_loss",
           "check_image2image_options", "check_image_targets", "DEFAULT_PERCEPTUAL_WEIGHT"]

#: ``loss=`` values of task ``"image2image"``; the first is the default.
IMAGE2IMAGE_LOSSES = ("l1", "mse", "perceptual", "l1+perceptual")
#: Weight of the perceptual term when none is given (see docs/image2image.md for the choice).
DEFAULT_PERCEPTUAL_WEIGHT = 0.1


def _uses_perceptual(loss: str | None) -> bool:
    return loss is not None and "perceptual" in loss


def check_image2image_options(loss: str | None, *, perceptual_backbone: Any = None,
                              perceptual_stages: Any = None,
                              perceptual_weight: Any = None) -> None:
    """Fail before any work on options that cannot make an image-to-image loss.

    ``loss`` is already one of :data:`IMAGE2IMAGE_LOSSES` (or ``None``); the ``perceptual_*``
    options need a perceptual loss, and the backbone must be a registered name.
    """
    given = [n for n, v in (("perceptual_backbone", perceptual_backbone),
                            ("perceptual_stages", perceptual_stages),
                            ("perceptual_weight", perceptual_weight)) if v is not None]
    if given and not _uses_perceptual(loss):
        raise ValueError(
            f"finetune: {', '.join(given)} only apply to loss='perceptual' or "
            f"'l1+perceptual', but loss is {loss or IMAGE2IMAGE_LOSSES[0]!r}. Pass "
            "loss='l1+perceptual', or drop them."
        )
    if perceptual_weight is not None and (
            isinstance(perceptual_weight, bool) or not isinstance(perceptual_weight, (int, float))
            or not math.isfinite(perceptual_weight) or perceptual_weight <= 0):
        raise ValueError(f"finetune: perceptual_weight must be a number > 0, got "
                         f"{perceptual_weight!r}.")
    if perceptual_stages is not None and (
            isinstance(perceptual_stages, (str, int)) or not isinstance(perceptual_stages, Sequence)
            or not perceptual_stages):
        raise TypeError(f"finetune: perceptual_stages must be a non-empty list of stage names "
                        f"or indices, got {perceptual_stages!r}.")
    if _uses_perceptual(loss):
        check_perceptual_backbone(perceptual_backbone or DEFAULT_PERCEPTUAL_BACKBONE)


def check_image_targets(targets: Tensor | None, out_channels: int, *,
                        images: Tensor | None = None, where: str = "") -> None:
    """Fail, with what to do, on target images an image-to-image head cannot learn.

    Args:
        targets: ``(N, C, H, W)`` pixels in ``[0, 1]`` (float) or ``uint8``; ``None``: nothing
            known up front.
        out_channels: channels the head outputs (``num_classes`` of ``replace_head``).
        images: the inputs ``(N, C', H, W)``: each target must have its input's size.
        where: prefix for the message (``"validation "``).
    """
    if targets is None:
        return
    if targets.ndim != 4:
        hint = " Add the channel axis: y[:, None] for grey targets." if targets.ndim == 3 else ""
        raise DataError(f"Image-to-image {where}targets must be images (N, C, H, W), got shape "
                        f"{tuple(targets.shape)}.{hint}")
    if targets.shape[1] != out_channels:
        raise DataError(
            f"The {where}target images have {targets.shape[1]} channels but the head outputs "
            f"{out_channels}. Rebuild the head with replace_head(backbone, "
            f"num_classes={targets.shape[1]}, head='unet', task='image2image')."
        )
    if images is not None and tuple(images.shape[-2:]) != tuple(targets.shape[-2:]):
        raise DataError(
            f"The {where}target images are {tuple(targets.shape[-2:])} (H, W) but their inputs "
            f"are {tuple(images.shape[-2:])}: the model predicts an image at its input's size. "
            "Resize the inputs to the targets' size first (for super-resolution: upsample the "
            "low-resolution input bicubically, as transferkit.datasets.super_resolution does)."
        )
    if targets.dtype == torch.uint8:
        return
    if not targets.is_floating_point():
        raise DataError(f"Image-to-image {where}targets must be float pixels in [0, 1] or "
                        f"uint8, got {targets.dtype}.")
    if not torch.isfinite(targets).all():
        raise DataError(f"The {where}target images hold NaN or infinite values; clean them "
                        "before training.")
    lo, hi = float(targets.min()), float(targets.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise DataError(
            f"Image-to-image {where}targets are pixels in [0, 1] (the model predicts in that "
            f"space; PSNR and SSIM use data range 1), got values in [{lo:.3g}, {hi:.3g}]. "
            "Scale them: y / 255 for 0..255 pixels."
        )


class Image2ImageLoss(nn.Module):
    """``l1``, ``mse``, ``perceptual`` or ``l1 + weight * perceptual`` between images.

    Args:
        kind: one of :data:`IMAGE2IMAGE_LOSSES`.
        perceptual: the :class:`PerceptualLoss` for the perceptual kinds.
        perceptual_weight: weight of the perceptual term.

    Example:
        >>> loss = Image2ImageLoss("l1")
        >>> float(loss(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)))
        0.5
    """

    def __init__(self, kind: str = "l1", *, perceptual: PerceptualLoss | None = None,
                 perceptual_weight: float = DEFAULT_PERCEPTUAL_WEIGHT) -> None:
        super().__init__()
        if kind not in IMAGE2IMAGE_LOSSES:
            raise ValueError(f"Image2ImageLoss: kind must be one of {list(IMAGE2IMAGE_LOSSES)}, "
                             f"got {kind!r}.")
        if _uses_perceptual(kind) and perceptual is None:
            raise ValueError(f"Image2ImageLoss: kind {kind!r} needs a PerceptualLoss.")
        self.kind = kind
        self.perceptual = perceptual if _uses_perceptual(kind) else None
        self.perceptual_weight = float(perceptual_weight)

    def forward(self, out: Tensor, target: Tensor) -> Tensor:
        target = target.to(out.dtype) if target.dtype != torch.uint8 else target.to(
            out.dtype).div(255)
        if self.kind == "mse":
            return F.mse_loss(out, target)
        loss = F.l1_loss(out, target) if self.kind != "perceptual" else out.new_zeros(())
        if self.perceptual is not None:
            loss = loss + self.perceptual_weight * self.perceptual(out, target)
        return loss

    def extra_repr(self) -> str:
        if self.perceptual is None:
            return f"kind={self.kind!r}"
        return f"kind={self.kind!r}, perceptual_weight={self.perceptual_weight}"


def make_image2image_loss(kind: str | None, *, perceptual_backbone: Any = None,
                          perceptual_stages: Sequence[str | int] | None = None,
                          perceptual_weight: float | None = None) -> Image2ImageLoss:
    """The loss of an image-to-image run (the perceptual network is loaded here, once)."""
    kind = kind or IMAGE2IMAGE_LOSSES[0]
    check_image2image_options(kind, perceptual_backbone=perceptual_backbone,
                              perceptual_stages=perceptual_stages,
                              perceptual_weight=perceptual_weight)
    perceptual = None
    if _uses_perceptual(kind):
        perceptual = PerceptualLoss(perceptual_backbone or DEFAULT_PERCEPTUAL_BACKBONE,
                                    stages=perceptual_stages)
    weight = DEFAULT_PERCEPTUAL_WEIGHT if perceptual_weight is None else perceptual_weight
    return Image2ImageLoss(kind, perceptual=perceptual, perceptual_weight=weight)


def image_targets_as_float(y: Tensor) -> Tensor:
    """``uint8`` target pixels scaled to ``[0, 1]``; float targets as they are."""
    return y.float().div_(255) if y.dtype == torch.uint8 else y
