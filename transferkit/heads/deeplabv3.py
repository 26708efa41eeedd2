"""``deeplabv3``: atrous spatial pyramid pooling on the deepest stage map (Chen et al. 2017).

The head is :class:`torchvision.models.segmentation.deeplabv3.DeepLabHead` itself (ASPP with
a 1x1 branch, three dilated 3x3 branches and image pooling, then a 3x3 convolution, BatchNorm,
ReLU and a 1x1 convolution to the classes), upsampled to the input's size. Its image-pooling
branch has BatchNorm on a 1x1 map, so training needs batches of at least 2.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from ._api import register_head
from ._dense import check_feature_info, upsample_to


class DeepLabV3(nn.Module):
    def __init__(self, feature_info: list[dict], num_classes: int,
                 atrous_rates: Sequence[int]) -> None:
        super().__init__()
        self.in_stages = (len(feature_info) - 1,)
        self.head = DeepLabHead(feature_info[-1]["num_chs"], num_classes, list(atrous_rates))

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        return upsample_to(self.head(features[self.in_stages[0]]), size)  # (N, K, H, W)


@register_head("deeplabv3", dense=True)
def deeplabv3(feature_info: list[dict], num_classes: int, *,
              atrous_rates: Sequence[int] = (12, 24, 36)) -> nn.Module:
    """torchvision's DeepLabHead: ASPP on the deepest map, upsampled to the input's size."""
    info = check_feature_info(feature_info, "deeplabv3")
    rates = list(atrous_rates) if isinstance(atrous_rates, (list, tuple)) else None
    if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
        raise ValueError(
            f"deeplabv3 head: atrous_rates must be a list of ints >= 1 (torchvision's default "
            f"is [12, 24, 36]), got {atrous_rates!r}."
        )
    return DeepLabV3(info, num_classes, rates)
