"""``dense_linear``: the per-pixel linear probe.

A 1x1 convolution on the deepest stage map (one linear classifier shared by every position),
upsampled bilinearly to the input's size: ``logits[n, :, i, j] = W f[n, :, i', j'] + b``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ._api import register_head
from ._dense import check_feature_info, upsample_to


class DenseLinear(nn.Module):
    def __init__(self, feature_info: list[dict], num_classes: int, dropout: float) -> None:
        super().__init__()
        self.in_stages = (len(feature_info) - 1,)
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.classifier = nn.Conv2d(feature_info[-1]["num_chs"], num_classes, kernel_size=1)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        x = self.classifier(self.dropout(features[self.in_stages[0]]))  # (N, K, h, w)
        return upsample_to(x, size)  # (N, K, H, W)


@register_head("dense_linear", dense=True)
def dense_linear(feature_info: list[dict], num_classes: int, *,
                 dropout: float = 0.0) -> nn.Module:
    """1x1 convolution on the deepest map, upsampled: the per-pixel linear probe."""
    info = check_feature_info(feature_info, "dense_linear")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dense_linear head: dropout must be in [0, 1), got {dropout!r}.")
    return DenseLinear(info, num_classes, dropout)
