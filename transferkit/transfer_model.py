"""``TransferModel``: a backbone and a new head, ``forward(x) -> logits``."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .backbones import Backbone
from .backbones._base import count_parameters

__all__ = ["TransferModel"]


class TransferModel(nn.Module):
    """A backbone with a new head for the target task.

    Attributes:
        backbone: the :class:`~transferkit.backbones.Backbone` (its original classifier removed).
        head: the new head; it receives ``backbone.forward_features(x)``.
        num_classes: outputs of the head.
        head_name, head_options: how the head was built (used by ``save``).
        class_names: optional names of the target classes.
        task: the task ``finetune`` trained it for (``None`` before any training).
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
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.head_name = head_name
        self.head_options = dict(head_options or {})
        self.class_names = list(class_names) if class_names else None
        self.task: str | None = None  # set by finetune; "multiclass", "multilabel", "regression"

    @property
    def data_config(self):
        return self.backbone.data_config

    def forward_features(self, x: Tensor) -> Tensor:
        """The backbone's unpooled output (what the head receives)."""
        return self.backbone.forward_features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits from features that ``forward_features`` produced (or a cache of them)."""
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone.forward_features(x))  # (N, num_classes)

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
