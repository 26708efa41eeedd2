"""Stage maps for dense heads: ``Backbone.feature_info`` and ``Backbone.forward_stages``.

A backbone's feature maps are outputs of its freezing stages, so that "freeze through stage
``s``" freezes exactly what computes the maps up to ``s``. Each family says where its
candidate maps are (``Backbone._stage_candidates``: by default the output of the last module of
each freezing stage, then ``forward_features``' own output); this module turns them into the
description, once per backbone, from one forward pass on the meta device (no memory, no
arithmetic): channels, reduction, and the freezing stage each map belongs to. Of several
candidates at the same resolution the deepest is kept (timm's and smp's convention), so the
maps are one per scale, shallow to deep.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._utils import resolve_path
from ..errors import NoSpatialFeaturesError

# The functions take a ``transferkit.backbones.Backbone``; this module never imports _base
# (_base imports this one), so they are annotated with its base class, ``nn.Module``.

__all__ = ["default_taps", "run_with_taps", "describe_stages", "run_stages", "no_maps_message"]


def default_taps(backbone: nn.Module) -> list[str]:
    """The last module path of each freezing stage, input first (parameters skipped)."""
    taps = []
    for stage in backbone.stage_names:
        modules = [p for p in backbone._stages[stage]
                   if isinstance(resolve_path(backbone, p), nn.Module)]
        if modules:
            taps.append(modules[-1])
    return taps


def run_with_taps(
    backbone: nn.Module,
    x: Tensor,
    taps: Sequence[str],
    run: Callable[[Tensor], Tensor],
    keep: set[int] | None = None,
    to_map: Callable[[Tensor], Tensor] = lambda t: t,
) -> dict[int, tuple[str, Tensor]]:
    """``run(x)`` once with forward hooks on the ``taps`` whose index is in ``keep`` (all when
    ``None``): ``{i: (taps[i], to_map(output))}``, and ``run(x)`` itself at index
    ``len(taps)`` (under the path ``""``). A tap that did not run is left out."""
    wanted = {i: p for i, p in enumerate(taps) if keep is None or i in keep}
    seen: dict[int, Tensor] = {}
    handles = []
    for i, path in wanted.items():
        def hook(_m: nn.Module, _i: Any, out: Any, i: int = i) -> None:
            if isinstance(out, Tensor):
                seen.setdefault(i, out)  # the first call is the stage's output
        handles.append(resolve_path(backbone, path).register_forward_hook(hook))
    try:
        final = run(x)
    finally:
        for h in handles:
            h.remove()
    out = {i: (wanted[i], to_map(t)) for i, t in sorted(seen.items())}
    out[len(taps)] = ("", final)
    return out


def _reduction(size: int, out: int) -> int:
    """Input side / map side as the network's stride: the nearest power of two when the ratio
    is within 10% of one (EfficientNet-B1 at 240 px has a 8 px map: 32, not 30; Inception's
    unpadded convolutions round the sides), else the exact ratio (ViT-H/14: 14)."""
    ratio = size / out
    p2 = 2 ** round(math.log2(ratio))
    if abs(ratio - p2) <= 0.1 * p2 or size % out:
        return p2
    return size // out


def _meta_copy(backbone: nn.Module) -> nn.Module:
    """A structural copy whose parameters and buffers live on the meta device (no data)."""
    memo: dict[int, Any] = {}
    for t in list(backbone.parameters()) + list(backbone.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(backbone, memo)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode inside, and every submodule's own mode restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _probe(backbone: nn.Module, x: Tensor) -> tuple[dict[int, tuple[str, Tensor]], dict[int, str]]:
    """Every candidate map, and for each the freezing stage whose modules ran last before it
    was produced (hooks on the stages' modules, in running order)."""
    taps = backbone._candidate_paths()
    current = {"stage": backbone.stage_names[0] if backbone.stage_names else ""}
    owner: dict[str, str] = {}
    handles = []
    for stage in backbone.stage_names:
        for path in backbone._stages[stage]:
            obj = resolve_path(backbone, path)
            if isinstance(obj, nn.Module):
                handles.append(obj.register_forward_hook(
                    lambda *_, stage=stage: current.__setitem__("stage", stage)))
    # Registered after the stages' hooks: on a module that is both, the stage's runs first.
    for path in dict.fromkeys(taps):
        def hook(*_: Any, path: str = path) -> None:  # returns None: the output is kept
            owner.setdefault(path, current["stage"])
        handles.append(resolve_path(backbone, path).register_forward_hook(hook))
    try:
        with torch.no_grad():
            cands = backbone._stage_candidates(x, None)
    finally:
        for h in handles:
            h.remove()
    return cands, {i: owner.get(p, current["stage"]) if p else current["stage"]
                   for i, (p, _) in cands.items()}


def describe_stages(backbone: nn.Module) -> tuple[list[dict[str, Any]], list[int]]:
    """``(feature_info, candidate indices)`` of ``backbone`` from one dummy forward.

    The forward runs in eval mode on a meta-device copy (no weights are copied), or on the
    backbone itself when it was built on the meta device; models whose ops have no meta
    kernel fall back to a no-grad forward of a zero image (every module's mode is restored).
    """
    size = backbone._probe_size()
    on_meta = all(t.is_meta for t in list(backbone.parameters()) + list(backbone.buffers()))
    try:
        probe = backbone if on_meta else _meta_copy(backbone)  # built on meta: no copy needed
        x = torch.empty(2, backbone.data_config.in_chans, size, size, device="meta")
        with _eval_mode(probe):  # eval: BatchNorm's meta kernels are half the cost of train's
            cands, owners = _probe(probe, x)
    except (NotImplementedError, RuntimeError):
        if on_meta:
            raise
        device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
        with _eval_mode(backbone):
            cands, owners = _probe(backbone, torch.zeros(1, backbone.data_config.in_chans,
                                                         size, size, device=device))
    info: list[dict[str, Any]] = []
    index: list[int] = []
    for i, (path, t) in cands.items():
        if not isinstance(t, Tensor) or t.ndim != 4:
            continue
        entry = {"num_chs": int(t.shape[1]), "reduction": _reduction(size, int(t.shape[2])),
                 "module": path or backbone._final_module(), "stage": owners[i]}
        if info and cands[index[-1]][1].shape[2:] == t.shape[2:]:
            info[-1], index[-1] = entry, i  # the deepest map at each resolution
        else:
            info.append(entry)
            index.append(i)
    return info, index


def run_stages(backbone: nn.Module, x: Tensor) -> list[Tensor]:
    """The maps :attr:`Backbone.feature_info` describes, for the batch ``x``."""
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(
            f"forward_stages: expected images of shape (N, C, H, W), got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}."
        )
    _, index = backbone._feature_description()
    if not index:
        raise NoSpatialFeaturesError(no_maps_message(backbone))
    cands = backbone._stage_candidates(x, set(index))
    return [cands[i][1] for i in index]


def no_maps_message(backbone: nn.Module) -> str:
    return (
        f"Backbone {backbone.name!r} gives no spatial feature map (its features are vectors "
        f"of shape (N, {backbone.num_features})), so a dense head cannot be put on it. Use a "
        "convolutional backbone, a ViT, or a timm model with spatial features; or register "
        "your backbone with forward_features returning (N, C, H, W)."
    )
