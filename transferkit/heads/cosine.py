"""``cosine``: logits are scaled cosine similarities between features and class weights.

logit_k = s * <x / |x|, w_k / |w_k|>, with a learnable scale s (Gidaris & Komodakis 2018,
"cosine classifier"); a common head for few-shot transfer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._api import register_head
from ._pool import GlobalPool


class CosineClassifier(nn.Module):
    def __init__(self, in_features: int, num_classes: int, scale: float, learn_scale: bool,
                 pool: str) -> None:
        super().__init__()
        self.pool = GlobalPool(pool)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)), requires_grad=learn_scale)

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.pool(x), dim=1)  # (N, C)
        w = F.normalize(self.weight, dim=1)  # (K, C)
        return self.log_scale.exp() * x @ w.t()  # (N, K)


@register_head("cosine", pooled=True)
def cosine(in_features: int, num_classes: int, *, scale: float = 10.0,
           learn_scale: bool = True, pool: str = "avg") -> nn.Module:
    """L2-normalised features and class weights with a learnable scale."""
    if not scale > 0:
        raise ValueError(f"cosine head: scale must be > 0, got {scale!r}.")
    return CosineClassifier(in_features, num_classes, scale, learn_scale, pool)
