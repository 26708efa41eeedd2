"""Any timm model as a backbone, under ``"timm/<model name>"`` (needs the ``timm`` extra).

timm models are a namespace, not registry entries: they are looked up in timm when asked for,
so importing transferkit never imports timm. Weights: a local file through
``load_backbone(..., weights=path)``, or timm's pretrained tags (``"DEFAULT"``): downloaded by
timm when online; offline, taken from the Hugging Face hub cache (or torch.hub's) when an
earlier download left them there.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor, nn

from ..errors import MissingDependencyError, UnknownNameError, WeightsUnavailableError
from ..weights import _reachable, hub_cache_path, is_offline, load_state_dict_file
from ._base import Backbone, BackboneSpec, DataConfig

__all__ = ["TIMM_PREFIX", "TimmBackbone", "timm_names", "timm_spec", "import_timm"]

#: Backbone names starting with this are timm models (``"timm/convnext_tiny"``).
TIMM_PREFIX = "timm/"


def import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise MissingDependencyError(
            "This backbone needs timm, which is not installed. Install it with "
            'pip install "transferkit[timm]" (or pip install timm).'
        ) from None
    return timm


@functools.lru_cache(maxsize=1)
def timm_names() -> tuple[str, ...]:
    """Every timm architecture as ``"timm/<name>"``."""
    return tuple(TIMM_PREFIX + n for n in import_timm().list_models())


def _data_config_from_timm(cfg: dict[str, Any]) -> DataConfig:
    size = tuple(cfg.get("input_size", (3, 224, 224)))
    crop_pct = float(cfg.get("crop_pct", 0.875))
    return DataConfig(
        input_size=size,  # type: ignore[arg-type]
        resize_size=int(round(size[1] / crop_pct)),
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=str(cfg.get("interpolation", "bilinear")),
    )


class TimmBackbone(Backbone):
    """A timm model built with ``num_classes=0`` (its classifier removed).

    ``forward_features`` returns timm's feature map ``(N, C, H, W)`` for convolutional models;
    for token models (ViT, ...) it returns timm's pooled pre-logits vector ``(N, C)``.
    """

    def __init__(self, model: nn.Module, *, name: str, weights_tag: str | None) -> None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        super().__init__(
            name=name,
            num_features=int(model.num_features),
            data_config=_data_config_from_timm(cfg),
            weights_tag=weights_tag,
        )
        self.model = model
        self.classifier_prefixes = tuple(
            f"{c}." for c in [getattr(model, "default_cfg", {}).get("classifier", "")] if c
        )
        self.set_stages(_timm_stages(model))

    def forward_features(self, x: Tensor) -> Tensor:
        f = self.model.forward_features(x)
        fmt = getattr(self.model, "output_fmt", "NCHW")
        if f.ndim == 4 and str(fmt).endswith("NHWC"):
            return self.model.forward_head(f, pre_logits=True)
        if f.ndim == 4:
            return f
        return self.model.forward_head(f, pre_logits=True)  # (N, C)

    # -- stage maps: timm's own feature_info and forward_intermediates (see _features.py) --
    def _timm_info(self) -> list[dict[str, Any]] | None:
        info = getattr(self.model, "feature_info", None)
        if isinstance(info, (list, tuple)) and info and all(
                isinstance(e, dict) and "module" in e for e in info):
            return list(info)
        return None

    def _candidate_paths(self) -> list[str]:
        info = self._timm_info()
        if info is None:
            return super()._candidate_paths()
        return [f"model.{e['module']}" for e in info]

    def _nchw(self, t: Tensor) -> Tensor:
        fmt = str(getattr(self.model, "output_fmt", "NCHW"))
        return t.permute(0, 3, 1, 2) if t.ndim == 4 and fmt.endswith("NHWC") else t

    def _tap_to_map(self, t: Tensor) -> Tensor:
        return self._nchw(t)

    def _stage_candidates(self, x: Tensor, keep: set[int] | None) -> dict[int, tuple[str, Tensor]]:
        info = self._timm_info()
        if info is None or not hasattr(self.model, "forward_intermediates"):
            from ._features import run_with_taps

            return run_with_taps(self, x, self._candidate_paths(),
                                 lambda t: self._nchw(self.model.forward_features(t)), keep,
                                 self._tap_to_map)
        n = len(info)
        idx = list(range(n)) if keep is None else sorted(i for i in keep if i < n)
        # One pass: timm's maps at `idx` (NCHW) and its final features (forward_features').
        # norm=True: a ViT's last token grid goes through its final norm, as its classifier's
        # input does (CNNs apply it to the last map only where it fits, or not at all).
        kwargs = {"norm": True} if "norm" in _parameters(self.model.forward_intermediates) else {}
        final, maps = self.model.forward_intermediates(
            x, indices=idx or [n - 1], output_fmt="NCHW", intermediates_only=False, **kwargs)
        if len(maps) != len(idx or [n - 1]):
            raise RuntimeError(
                f"{self.name}: timm's forward_intermediates gave {len(maps)} maps for indices "
                f"{idx}, but its feature_info has {n} entries."
            )
        out = {i: (f"model.{info[i]['module']}", t) for i, t in zip(idx, maps)}
        out[n] = ("", self._nchw(final))
        return out

    def _probe_size(self) -> int:
        fixed = getattr(getattr(self.model, "patch_embed", None), "img_size", None)
        if isinstance(fixed, (tuple, list)) and fixed and getattr(
                self.model.patch_embed, "strict_img_size", True):
            return int(fixed[0])
        return super()._probe_size()


@functools.lru_cache(maxsize=None)
def _parameters_of(fn: Any) -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(fn).parameters)


def _parameters(method: Any) -> tuple[str, ...]:
    return _parameters_of(getattr(method, "__func__", method))


def _timm_stages(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Stages from timm's own coarse parameter groups (its layer-decay grouping).

    Parameters are mapped to their owning modules, so that freezing a stage can also keep its
    BatchNorm layers in eval mode. Models without ``group_matcher`` get one stage per child.
    """
    from ._base import children_stages

    if not hasattr(model, "group_matcher"):
        return children_stages(model)
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    modules = dict(model.named_modules())
    stages: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    for i, (_, names) in enumerate(sorted(groups.items())):
        paths: list[str] = []
        for pname in names:
            owner = pname.rpartition(".")[0]
            path = owner if owner in modules and owner else pname
            if path not in seen:
                seen.add(path)
                paths.append(f"model.{path}")
        stages["stem" if i == 0 else f"stage{i}"] = tuple(paths)
    return stages


def cached_weights_file(timm: Any, model_name: str) -> str | None:
    """The local copy of timm's pretrained weights for ``model_name`` (``arch`` or
    ``arch.tag``) left by an earlier download, or ``None``.

    Looks where timm downloads to: the Hugging Face hub cache (``HF_HOME`` / ``HF_HUB_CACHE``)
    for the weights' hub repository, then torch.hub's ``checkpoints`` folder for those that
    come from a URL.
    """
    cfg = timm.models.get_pretrained_cfg(model_name, allow_unregistered=False)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        files = ([cfg.hf_hub_filename] if cfg.hf_hub_filename
                 else ["model.safetensors", "pytorch_model.bin"])  # timm's order
        for filename in files:
            found = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE,
                                           revision=revision or None)
            if isinstance(found, str):
                return found
    if cfg.url and hub_cache_path(cfg.url).is_file():
        return str(hub_cache_path(cfg.url))
    return None


def timm_spec(name: str) -> BackboneSpec:
    arch = name[len(TIMM_PREFIX):]
    timm = import_timm()
    if not timm.is_model(arch):
        import difflib

        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(repr(TIMM_PREFIX + c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"Unknown backbone {name!r}: timm has no model {arch!r}.{hint} See "
            "transferkit.list_backbones('timm/*')."
        )

    def build(*, weights: str | None = None, **kwargs: Any) -> Backbone:
        pretrained = weights is not None
        tag = None if weights in (None, "DEFAULT") else weights
        full = arch if tag is None else f"{arch}.{tag}"
        overlay = None
        if pretrained and (is_offline() or not _reachable("https://huggingface.co")):
            path = cached_weights_file(timm, full)
            if path is None:
                raise WeightsUnavailableError(
                    f"Cannot get timm's pretrained weights for {full!r}: there is no network "
                    "connection, timm downloads them from the Hugging Face hub, and no earlier "
                    "download is in the hub cache (HF_HOME or HF_HUB_CACHE) or torch.hub's. "
                    "Pass weights=<path to a .pth or .safetensors state dict>, point HF_HOME "
                    "at a hub cache that holds them, or load it once while online."
                )
            # Read safely here (safetensors, or torch.load with weights_only=True); timm then
            # adapts the state dict (classifier removed, filters) as for a download.
            overlay = {"state_dict": load_state_dict_file(path)}
        model = timm.create_model(full, pretrained=pretrained, num_classes=0,
                                  pretrained_cfg_overlay=overlay, **kwargs)
        return TimmBackbone(model, name=name, weights_tag=weights)

    return BackboneSpec(name=name, builder=build, family="timm", description=f"timm {arch}")
