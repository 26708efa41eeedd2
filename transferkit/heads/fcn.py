"""``fcn``: torchvision's FCN head on the deepest stage map, upsampled to the input's size.

The head is :class:`torchvision.models.segmentation.fcn.FCNHead` itself: a 3x3 convolution to
``in_channels // 4``, BatchNorm, ReLU, dropout 0.1, and a 1x1 convolution to the classes
(Long et al. 2015, as torchvision builds FCN-ResNet).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.segmentation.fcn import FCNHead

from ._api import register_head
from ._dense import check_feature_info, upsample_to


class FCN(nn.Module):
    def __init__(self, feature_info: list[dict], num_classes: int) -> None:
        super().__init__()
        self.in_stages = (len(feature_info) - 1,)
        self.head = FCNHead(feature_info[-1]["num_chs"], num_classes)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        return upsample_to(self.head(features[self.in_stages[0]]), size)  # (N, K, H, W)


@register_head("fcn", dense=True)
def fcn(feature_info: list[dict], num_classes: int) -> nn.Module:
    """torchvision's FCNHead (3x3 conv, BN, ReLU, dropout, 1x1 conv) on the deepest map."""
    return FCN(check_feature_info(feature_info, "fcn"), num_classes)
