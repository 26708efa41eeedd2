"""``unet``: a U-Net decoder over the backbone's stage maps (Ronneberger et al. 2015).

Starting from the deepest map, each decoder block doubles the resolution (bilinear, to the
exact size of the skip map, so odd input sizes work), concatenates the stage map of that
resolution when the backbone has one (the skip connection), and applies two 3x3
convolution-BatchNorm-ReLU layers; the last block works at the input's own size and a 1x1
convolution gives the logits. Block widths come from the backbone's ``feature_info`` (measured
by a forward pass), not from tables, so any encoder fits under it, as in
segmentation_models_pytorch and fastai's ``unet_learner``. A single-scale backbone (a ViT's
token grid) gets the same upsampling blocks without skips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._api import register_head
from ._dense import check_feature_info, upsample_to


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Upsample to the target size, concatenate the skip (if any), two conv-BN-ReLU."""

    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(c_in + c_skip, c_out), _conv_bn_relu(c_out, c_out))

    def forward(self, x: Tensor, size: Sequence[int], skip: Tensor | None) -> Tensor:
        x = upsample_to(x, size)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)  # (N, c_in + c_skip, h, w)
        return self.convs(x)


def _plan(reductions: Sequence[float]) -> list[tuple[float, int | None]]:
    """The decoder's steps from the deepest map: ``(reduction, index of the skip map or None)``.

    Every shallower map is a step; between them (and below the shallowest, down to the input's
    reduction 1) the resolution doubles per step.
    """
    deepest = reductions[-1]
    skips = {i: r for i, r in enumerate(reductions[:-1]) if r < deepest}
    steps: list[tuple[float, int | None]] = []
    r = deepest
    for i in sorted(skips, key=lambda i: -skips[i]):
        while r / 2 > skips[i] * 1.5:  # missing scales between two maps
            r /= 2
            steps.append((r, None))
        r = skips[i]
        steps.append((r, i))
    while r > 1:
        r = max(r / 2, 1.0)
        steps.append((r, None))
    return steps


class UNet(nn.Module):
    def __init__(self, feature_info: list[dict], num_classes: int,
                 decoder_channels: Sequence[int]) -> None:
        super().__init__()
        chs = [e["num_chs"] for e in feature_info]
        self.steps = _plan([float(e["reduction"]) for e in feature_info])
        self.in_stages = tuple(sorted({len(chs) - 1, *(i for _, i in self.steps if i is not None)}))
        blocks, c = [], chs[-1]
        for (_, skip), width in zip(self.steps, decoder_channels):
            blocks.append(DecoderBlock(c, chs[skip] if skip is not None else 0, width))
            c = width
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(c, num_classes, kernel_size=1)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        h, w = int(size[0]), int(size[1])
        x = features[-1]
        for (r, skip), block in zip(self.steps, self.blocks):
            s = features[skip] if skip is not None else None
            target = s.shape[-2:] if s is not None else (math.ceil(h / r), math.ceil(w / r))
            x = block(x, target, s)
        return self.classifier(x)  # (N, K, H, W): the last step is at reduction 1


@register_head("unet", dense=True)
def unet(feature_info: list[dict], num_classes: int, *,
         decoder_channels: int | Sequence[int] = 256) -> nn.Module:
    """U-Net decoder over the stage maps (skip connections), up to the input's size."""
    info = check_feature_info(feature_info, "unet")
    n = len(_plan([float(e["reduction"]) for e in info]))
    if isinstance(decoder_channels, int) and not isinstance(decoder_channels, bool):
        widths = [max(decoder_channels // 2**i, 16) for i in range(n)]
    elif isinstance(decoder_channels, (list, tuple)):
        widths = list(decoder_channels)
    else:
        widths = []
    if (len(widths) != n
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in widths)):
        raise ValueError(
            f"unet head: decoder_channels must be an int >= 1 (the first block's width, halved "
            f"per block down to 16) or {n} ints >= 1, one per decoder block for this backbone "
            f"(reductions {[e['reduction'] for e in info]}); got {decoder_channels!r}."
        )
    return UNet(info, num_classes, widths)
