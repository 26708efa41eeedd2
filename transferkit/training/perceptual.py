"""The perceptual loss: distances between feature maps of a frozen pretrained backbone.

Johnson et al. (2016) train image generators on distances between VGG16 features of the output
and of the target instead of (or beside) pixel distances; Zhang et al. (2018, LPIPS) showed
that unit-normalising each feature vector over its channels first makes the distance track
human judgement across networks. :class:`PerceptualLoss` computes that distance on any
registered backbone (``"efficientnet_lite0"`` by default: its ImageNet weights ship in a pip
package, so it works offline):

    d(x, y) = mean over stages s of  mean over (h, w) of  sum over c of
              (phi_s(x) / |phi_s(x)|_c - phi_s(y) / |phi_s(y)|_c)^2

where ``phi_s`` is the map ``s`` of ``Backbone.forward_stages`` computed on the image
normalised with the backbone's own ``data_config`` (mean, std). Each term lies in ``[0, 4]``;
identical images give exactly 0.

The loss network is a transfer of pretrained features that is never trained: its parameters do
not require gradients (the optimiser never sees them, it is not part of the model, so ``save``
and checkpoints do not hold it) and it stays in eval mode (BatchNorm running statistics are
never updated), whatever ``train()`` is called with. Gradients flow through it to the image.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..backbones import Backbone
from ..data.preprocess import fix_channels
from ..errors import DataError, StageError, WeightsError

__all__ = ["PerceptualLoss", "check_perceptual_backbone", "shared_perceptual_loss",
           "DEFAULT_PERCEPTUAL_BACKBONE"]

DEFAULT_PERCEPTUAL_BACKBONE = "efficientnet_lite0"


def check_perceptual_backbone(backbone: object) -> None:
    """Fail fast, without building anything, on a perceptual backbone that cannot work.

    Raises:
        UnknownNameError: not a registered name (the message names the close matches).
        TypeError: neither a name nor a :class:`Backbone`.
    """
    if isinstance(backbone, Backbone):
        return
    if not isinstance(backbone, str):
        raise TypeError(
            f"perceptual_backbone must be a registered backbone name (such as "
            f"{DEFAULT_PERCEPTUAL_BACKBONE!r}) or a Backbone, got {type(backbone).__name__}."
        )
    from ..backbones import get_backbone_spec
    from ..errors import UnknownNameError

    try:
        get_backbone_spec(backbone)
    except UnknownNameError as exc:  # the registry's message names the close matches
        raise UnknownNameError(f"perceptual_backbone: {exc}") from None


def _load_pretrained(name: str, weights: str | None) -> Backbone:
    from ..load_backbone import load_backbone  # model surgery sits below the engine

    if weights is None:
        return load_backbone(name, weights=None)
    try:
        return load_backbone(name, weights=weights)
    except WeightsError as exc:
        raise WeightsError(
            f"The perceptual loss needs pretrained weights for {name!r}, which could not be "
            f"loaded: {exc} Choose a backbone whose weights are here, such as "
            f"{DEFAULT_PERCEPTUAL_BACKBONE!r} (offline, from a pip package)."
        ) from None


class PerceptualLoss(nn.Module):
    """Mean LPIPS-style feature distance between ``output`` and ``target`` images.

    Args:
        backbone: a registered backbone name, or a :class:`Backbone` (copied, so that the
            caller's stays as it is and trainable).
        stages: the maps to compare: indices into ``backbone.feature_info`` (one map per
            scale, shallow to deep), or the names of the freezing stages they belong to;
            ``None``: every map at most 8x smaller than the input (the early, texture-level
            features that perceptual losses use; relu1_2 .. relu3_3 of VGG16 in Johnson et al.).
        weights: weights to load when ``backbone`` is a name (``"DEFAULT"``: its pretrained
            ones; ``None`` random, for tests only: a random network is no perceptual measure).

    Inputs are images in pixel space ``[0, 1]``, ``(N, C, H, W)``, ``C`` the backbone's
    channels or 1 (repeated); they are normalised with the backbone's own mean and std.

    Example:
        >>> import torch
        >>> loss = PerceptualLoss("efficientnet_lite0")
        >>> x = torch.rand(2, 3, 32, 32)
        >>> float(loss(x, x))
        0.0
    """

    def __init__(self, backbone: str | Backbone = DEFAULT_PERCEPTUAL_BACKBONE, *,
                 stages: Sequence[str | int] | None = None,
                 weights: str | None = "DEFAULT") -> None:
        super().__init__()
        check_perceptual_backbone(backbone)
        if stages is not None and (isinstance(stages, (str, int)) or not all(
                isinstance(s, (str, int)) and not isinstance(s, bool) for s in stages)):
            raise TypeError(f"perceptual_stages must be a sequence of stage names or indices, "
                            f"got {stages!r}.")
        net = (copy.deepcopy(backbone) if isinstance(backbone, Backbone)
               else _load_pretrained(backbone, weights))
        net.requires_grad_(False)
        net.eval()
        self.net = net
        self.map_indices = _pick_maps(net, stages)
        info = net.feature_info
        self.stages = [info[i]["stage"] for i in self.map_indices]
        mean = torch.tensor(net.data_config.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(net.data_config.std, dtype=torch.float32)[:, None, None]
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """The loss network stays in eval mode: its BatchNorm statistics never change."""
        super().train(mode)
        self.net.eval()
        return self

    def features(self, images: Tensor) -> list[Tensor]:
        """The maps of :attr:`stages` for ``images`` in ``[0, 1]`` (normalised here)."""
        x = fix_channels(images, self.net.data_config.in_chans)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        maps = self.net.forward_stages(x)
        return [maps[i] for i in self.map_indices]

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        """Per-image distances ``(N,)``; gradients reach ``output``, never ``target``."""
        if output.shape != target.shape:
            raise DataError(
                f"PerceptualLoss: output {tuple(output.shape)} and target "
                f"{tuple(target.shape)} must have the same shape (N, C, H, W)."
            )
        with torch.no_grad():
            ref = self.features(target)
        out = self.features(output)
        total = output.new_zeros(output.shape[0])
        for a, b in zip(out, ref):
            a, b = F.normalize(a, dim=1, eps=1e-8), F.normalize(b, dim=1, eps=1e-8)
            total = total + (a - b).pow(2).sum(1).mean(dim=(1, 2))  # (N,)
        return total / len(out)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """The mean distance over the batch (a scalar)."""
        return self.distance(output, target).mean()

    def __repr__(self) -> str:  # the loss network's full module tree says nothing useful here
        return f"PerceptualLoss(backbone={self.net.name!r}, stages={self.stages})"


def _pick_maps(net: Backbone, stages: Sequence[str | int] | None) -> list[int]:
    """Indices into ``net.feature_info`` (one map per scale, shallow to deep) of ``stages``:
    map indices, or the freezing-stage names the maps belong to; ``None``: every map at
    most 8x smaller than the input."""
    info = net.feature_info
    if not info:
        from ..backbones._features import no_maps_message

        raise StageError(f"The perceptual loss compares feature maps. {no_maps_message(net)}")
    listing = ", ".join(f"{i}: {e['stage']!r} (1/{e['reduction']})" for i, e in enumerate(info))
    if stages is None:
        return [i for i, e in enumerate(info) if e["reduction"] <= 8] or [0]
    if not stages:
        raise StageError(f"perceptual_stages is empty; name at least one map of {net.name!r} "
                         f"({listing}).")
    picked = set()
    names = [e["stage"] for e in info]
    for s in stages:
        if isinstance(s, int) and -len(info) <= s < len(info):
            picked.add(s % len(info))
        elif isinstance(s, str) and s in names:
            picked.add(names.index(s))
        else:
            raise StageError(
                f"perceptual_stages: {net.name!r} has no feature map {s!r}. Its maps, shallow "
                f"to deep (index: stage (scale)): {listing}."
            )
    return sorted(picked)


@functools.lru_cache(maxsize=4)
def shared_perceptual_loss(backbone: str = DEFAULT_PERCEPTUAL_BACKBONE) -> PerceptualLoss:
    """One :class:`PerceptualLoss` per backbone name for the process (what ``evaluate``
    scores with): it is frozen and never changes, so sharing it is safe and loads it once."""
    return PerceptualLoss(backbone)
