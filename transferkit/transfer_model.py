"""``TransferModel``: a backbone and a new head, ``forward(x) -> logits``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ._tasks import CLASSIFICATION_TASKS, DENSE_TASKS
from .backbones import Backbone
from .backbones._base import count_parameters

__all__ = ["TransferModel", "DENSE_TASKS", "CLASSIFICATION_TASKS"]  # task names: _tasks.py


class TransferModel(nn.Module):
    """A backbone with a new head for the target task.

    Attributes:
        backbone: the :class:`~transferkit.backbones.Backbone` (its original classifier removed).
        head: the new head; it receives ``backbone.forward_features(x)``, or for a dense
            head ``head(backbone.forward_stages(x), (H, W))``.
        num_classes: outputs of the head.
        head_name, head_options: how the head was built (used by ``save``).
        class_names: optional names of the target classes.
        task: the task ``finetune`` trained it for (``None`` before any training); a
            model with a dense head is built with ``"segmentation"`` or ``"image2image"``.
        dense: the head is dense: logits ``(N, num_classes, H, W)`` at the input's size.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: nn.Module,
        num_classes: int,
        *,
        head_name: str = "custom",
        head_options: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        dense: bool = False,
        task: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.head_name = head_name
        self.head_options = dict(head_options or {})
        self.class_names = list(class_names) if class_names else None
        self.dense = bool(dense)
        # "segmentation"/"image2image" for dense heads; else set by finetune ("multiclass", ...)
        self.task: str | None = task

    @property
    def data_config(self):
        return self.backbone.data_config

    def forward_features(self, x: Tensor) -> Tensor | list[Tensor]:
        """What the head receives: the backbone's unpooled output, or for a dense head the
        list of stage maps ``backbone.forward_stages(x)``."""
        if self.dense:
            return self.backbone.forward_stages(x)
        return self.backbone.forward_features(x)

    def forward_head(self, features: Tensor | Sequence[Tensor],
                     size: Sequence[int] | None = None) -> Tensor:
        """Logits from features that ``forward_features`` produced (or a cache of them).

        A dense head also needs ``size``, the input's ``(H, W)``: its logits are
        ``(N, num_classes, H, W)``.
        """
        if self.dense:
            if size is None:
                raise ValueError(
                    "forward_head: this model's head is dense; pass size=(H, W), the input "
                    "images' size, which its logits are upsampled to."
                )
            return self.head(features, (int(size[0]), int(size[1])))
        return self.head(features)

    @property
    def residual(self) -> bool:
        """An image-to-image model with as many output channels as input channels predicts a
        correction to its input: ``forward(x) = pixels(x) + head(...)``, ``pixels`` undoing the
        input normalisation, so that it starts from the identity (the degraded input)."""
        return self.task == "image2image" and self.num_classes == self.data_config.in_chans

    def forward(self, x: Tensor) -> Tensor:
        # (N, num_classes), or (N, num_classes, H, W) for a dense head
        out = self.forward_head(self.forward_features(x), tuple(x.shape[-2:]))
        if self.residual:
            cfg = self.data_config
            mean = x.new_tensor(cfg.mean)[:, None, None]
            std = x.new_tensor(cfg.std)[:, None, None]
            out = out + (x * std + mean)  # the input back in pixel space
        return out

    def parameter_counts(self) -> tuple[int, int]:
        """``(trainable, frozen)`` parameter counts of the whole model."""
        return count_parameters(self)

    def __repr__(self) -> str:
        trainable, frozen = self.parameter_counts()
        opts = ", ".join(f"{k}={v!r}" for k, v in self.head_options.items())
        head = f"{self.head_name}({opts})" if opts else self.head_name
        return (
            f"TransferModel(backbone={self.backbone.name!r}, "
            f"weights={self.backbone.weights_tag!r}, head={head}, "
            f"num_classes={self.num_classes}, trainable_params={trainable:,}, "
            f"frozen_params={frozen:,})"
        )
