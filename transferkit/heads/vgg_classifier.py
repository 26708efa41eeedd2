"""``vgg_classifier``: the classic VGG top on any backbone.

Adaptive average pooling to 7x7, flatten, then 4096-4096-``num_classes`` with ReLU and Dropout,
as in torchvision's VGG and in the article's ``VGG16Custom``. On a vector ``(N, C)`` it treats
the vector as a 1x1 map, exactly as torchvision's VGG does when its map is 1x1.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._api import register_head


class VGGClassifier(nn.Module):
    def __init__(self, in_features: int, num_classes: int, pool_size: int, hidden: int,
                 dropout: float) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(in_features * pool_size * pool_size, hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:
            x = x[:, :, None, None]  # (N, C) -> (N, C, 1, 1)
        x = self.avgpool(x)  # (N, C, 7, 7)
        return self.classifier(x.flatten(1))


@register_head("vgg_classifier")
def vgg_classifier(in_features: int, num_classes: int, *, pool_size: int = 7,
                   hidden: int = 4096, dropout: float = 0.5) -> nn.Module:
    """VGG's classifier: 7x7 average pool, 4096-4096-num_classes with ReLU and Dropout."""
    return VGGClassifier(in_features, num_classes, pool_size, hidden, dropout)
