"""The backbone contract: a feature extractor with its metadata and its freezing stages.

Every backbone, whatever family it comes from, is a :class:`Backbone`:

- ``forward_features(x)`` gives the unpooled output: a map ``(N, C, H, W)`` for convolutional
  networks and Swin/MaxViT, or a vector ``(N, C)`` where the model's own pooling is the choice of
  a token (torchvision's ViT: the class token). ``feature_format`` says which.
- ``forward(x)`` gives pooled features ``(N, num_features)``.
- ``stage_names`` lists the freezing stages from the input to the output; every parameter of
  the backbone belongs to exactly one stage.
- ``data_config`` is the preprocessing the weights expect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from torch import Tensor, nn

from .._utils import resolve_path
from ._features import default_taps, describe_stages, run_stages, run_with_taps

__all__ = ["Backbone", "BackboneSpec", "DataConfig", "global_pool", "resolve_path"]

FeatureFormat = Literal["map", "vector"]


@dataclass(frozen=True)
class DataConfig:
    """Preprocessing a backbone's weights expect (from the weights' own transforms).

    Attributes:
        input_size: ``(C, H, W)`` of the crop the model sees.
        resize_size: the shorter side is resized to this before the centre crop (evaluation).
        mean, std: per-channel normalisation.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    resize_size: int = 256
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    @property
    def crop_size(self) -> int:
        return self.input_size[1]

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    def with_image_size(self, size: int) -> "DataConfig":
        """The same preprocessing at another crop size (resize scaled in proportion)."""
        ratio = self.resize_size / self.input_size[1]
        return replace(self, input_size=(self.in_chans, size, size), resize_size=round(size * ratio))

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "resize_size": self.resize_size,
            "crop_size": self.crop_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataConfig":
        return cls(
            input_size=tuple(d["input_size"]),
            resize_size=int(d["resize_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=str(d["interpolation"]),
        )


@dataclass(frozen=True)
class WeightsInfo:
    """What the publisher of a backbone's default pretrained weights reports about them, and
    whether they can be loaded here without a network.

    Attributes:
        tag: the weights' tag (``weights=tag``).
        num_params: parameters of the whole pretrained classifier, its original head included.
        imagenet_top1, imagenet_top5: ImageNet-1K validation accuracy in percent, as published
            (torchvision's weights metadata; Google's for the EfficientNet-Lites).
        gmacs: billions of multiply-adds per image at the weights' input size (torchvision
            calls the same count "GFLOPS").
        file_mb: size of the weights file in MB.
        available: ``True`` when loading them needs no network now (a pip package, or a copy
            in torch.hub's cache); ``False`` when they would be downloaded.
        where: where they come from, or would be downloaded from.
    """

    tag: str
    num_params: int | None = None
    imagenet_top1: float | None = None
    imagenet_top5: float | None = None
    gmacs: float | None = None
    file_mb: float | None = None
    available: bool = False
    where: str = ""


@dataclass(frozen=True)
class BackboneSpec:
    """Metadata that travels beside a registered backbone builder.

    Attributes:
        name: the registry name.
        builder: ``builder(*, weights, **kwargs) -> Backbone | nn.Module``; ``weights`` is
            ``None`` or one of ``pretrained_tags`` (files and state dicts are loaded by
            :func:`transferkit.load_backbone` itself).
        num_features: pooled feature size.
        family: where the architecture comes from ("torchvision", "timm", "user", ...).
        data_config: the preprocessing of the default weights.
        pretrained_tags: names accepted as ``weights=`` (``"DEFAULT"`` is an alias of the first).
        stages: for a plain ``nn.Module`` builder, the freezing stages as attribute paths
            (``{"stem": ("conv1", "bn1"), "layer1": ("layer1",)}``); ``None`` uses its children.
        min_input_size: the smallest square input the architecture accepts.
        source_categories: class names of the original (pretraining) head, if known.
        description: one line for listings.
        weights_info: ``() -> WeightsInfo`` about the default pretrained weights (called
            when asked, so that listing stays cheap), or ``None`` when unknown.
    """

    name: str
    builder: Callable[..., Any]
    num_features: int | None = None
    family: str = "user"
    data_config: DataConfig = field(default_factory=DataConfig)
    pretrained_tags: tuple[str, ...] = ()
    stages: Mapping[str, Sequence[str]] | None = None
    min_input_size: int = 32
    source_categories: tuple[str, ...] | None = None
    description: str = ""
    weights_info: Callable[[], WeightsInfo] | None = None


def global_pool(x: Tensor) -> Tensor:
    """Average a feature map ``(N, C, H, W)`` to ``(N, C)``; pass a vector ``(N, C)`` through."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 2:
        return x
    raise ValueError(
        f"Expected backbone features of shape (N, C, H, W) or (N, C), got {tuple(x.shape)}."
    )


class Backbone(nn.Module):
    """Base class of every backbone: the wrapped network lives in ``self.model``.

    Subclasses set ``self.model`` and implement :meth:`forward_features`; they describe their
    stages with :meth:`set_stages`. Keys of ``self.model.state_dict()`` are what weight files
    are matched against.
    """

    feature_format: FeatureFormat = "map"
    # State-dict prefixes of the original classifier that a weights file may hold; dropped on load.
    classifier_prefixes: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        name: str,
        num_features: int,
        data_config: DataConfig,
        weights_tag: str | None = None,
        source_categories: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.num_features = int(num_features)
        self.data_config = data_config
        self.weights_tag = weights_tag
        self.source_categories = tuple(source_categories) if source_categories else None
        self._stages: dict[str, tuple[str, ...]] = {}
        self._frozen_bn: set[str] = set()

    # -- the forward contract -------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features ``(N, num_features)``."""
        return global_pool(self.forward_features(x))

    # -- stages ---------------------------------------------------------------------------
    def set_stages(self, stages: Mapping[str, Sequence[str]]) -> None:
        """Declare the freezing stages, input first: name -> attribute paths under ``self``."""
        self._stages = {name: tuple(paths) for name, paths in stages.items()}

    @property
    def stage_names(self) -> list[str]:
        """Stage names from the input to the output."""
        return list(self._stages)

    def stage_index(self, stage: str | int) -> int:
        """Position of ``stage`` (a name or an index, negative allowed) in :attr:`stage_names`."""
        from ..errors import StageError  # local: errors is a leaf, this keeps the order clear

        names = self.stage_names
        if isinstance(stage, bool) or not isinstance(stage, (str, int)):
            raise TypeError(f"A stage is a name or an int index, got {type(stage).__name__}.")
        if isinstance(stage, int):
            if -len(names) <= stage < len(names):
                return stage % len(names)
            raise StageError(
                f"Stage index {stage} is out of range for backbone {self.name!r}, which has "
                f"{len(names)} stages: {names}."
            )
        if stage not in self._stages:
            raise StageError(
                f"Backbone {self.name!r} has no stage {stage!r}. Its stages, from the input: "
                f"{names}."
            )
        return names.index(stage)

    def stage_parameters(self, stage: str) -> Iterator[tuple[str, nn.Parameter]]:
        """``(qualified name, parameter)`` pairs of one stage, names relative to the backbone."""
        for path in self._stages[stage]:
            obj = resolve_path(self, path)
            if isinstance(obj, nn.Parameter):
                yield path, obj
            else:
                for sub, p in obj.named_parameters():
                    yield f"{path}.{sub}", p

    def stage_modules(self, stage: str) -> Iterator[tuple[str, nn.Module]]:
        """``(qualified name, module)`` pairs of every module inside one stage."""
        for path in self._stages[stage]:
            obj = resolve_path(self, path)
            if isinstance(obj, nn.Module):
                for sub, m in obj.named_modules():
                    yield (f"{path}.{sub}" if sub else path), m

    # -- stage maps for dense heads (see _features.py) -----------------------------------
    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One entry per map of :meth:`forward_stages`, shallow to deep (timm's convention).

        Each entry: ``num_chs`` (channels), ``reduction`` (input side / map side),
        ``module`` (path under the backbone whose output the map is) and ``stage`` (the
        freezing stage it belongs to: freezing through that stage freezes all that computes
        it). Measured once from a forward pass on the meta device. Empty when the backbone
        gives no spatial map.
        """
        return [dict(e) for e in self._feature_description()[0]]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """One feature map ``(N, num_chs, H / reduction, W / reduction)`` per entry of
        :attr:`feature_info`, shallow to deep, from one pass of the backbone's own forward.

        Raises:
            NoSpatialFeaturesError: the backbone gives no spatial map.
        """
        return run_stages(self, x)

    def _feature_description(self) -> tuple[list[dict[str, Any]], list[int]]:
        cached = self.__dict__.get("_feature_description_cache")
        if cached is None:
            cached = describe_stages(self)
            self.__dict__["_feature_description_cache"] = cached
        return cached

    # What a family overrides to say where its maps are; the defaults tap the last module of
    # each freezing stage, then forward_features' own output.
    def _candidate_paths(self) -> list[str]:
        return default_taps(self)

    def _tap_to_map(self, t: Tensor) -> Tensor:
        return t

    def _stage_candidates(self, x: Tensor, keep: set[int] | None) -> dict[int, tuple[str, Tensor]]:
        return run_with_taps(self, x, self._candidate_paths(), self.forward_features, keep,
                             self._tap_to_map)

    def _final_module(self) -> str:
        taps = default_taps(self)
        return taps[-1] if taps else ""

    def _probe_size(self) -> int:
        return max(int(self.data_config.crop_size), 32)

    # -- frozen BatchNorm stays in eval mode ----------------------------------------------
    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if mode:
            modules = dict(self.named_modules())
            for name in self._frozen_bn:
                modules[name].eval()
        return self

    # -- weights --------------------------------------------------------------------------
    def load_weights(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load a state dict into ``self.model`` strictly, after dropping classifier keys."""
        from ..weights import match_state_dict

        matched = match_state_dict(self.model, state_dict, self.classifier_prefixes, self.name)
        self.model.load_state_dict(matched, strict=True)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weights={self.weights_tag!r}, num_features={self.num_features}"


def children_stages(module: nn.Module, prefix: str = "model") -> dict[str, tuple[str, ...]]:
    """One stage per child that holds parameters (the fallback for a user's plain module)."""
    stages: dict[str, tuple[str, ...]] = {}
    for name, child in module.named_children():
        if any(True for _ in child.parameters()):
            stages[name] = (f"{prefix}.{name}",)
    direct = [n for n, _ in module.named_parameters(recurse=False)]
    if direct:
        stages = {"params": tuple(f"{prefix}.{n}" for n in direct), **stages}
    return stages


class ModuleBackbone(Backbone):
    """Wraps a user's plain ``nn.Module`` whose forward (or ``forward_features``) gives features."""

    def __init__(self, module: nn.Module, spec: BackboneSpec, weights_tag: str | None) -> None:
        num_features = spec.num_features or getattr(module, "num_features", None)
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(
                f"Backbone {spec.name!r}: its pooled feature size is unknown. Pass "
                f"num_features=<int> to register_backbone, or give the module a num_features "
                f"attribute."
            )
        super().__init__(
            name=spec.name,
            num_features=num_features,
            data_config=spec.data_config,
            weights_tag=weights_tag,
            source_categories=spec.source_categories,
        )
        self.model = module
        if spec.stages is not None:
            self.set_stages({k: tuple(f"model.{p}" for p in v) for k, v in spec.stages.items()})
        else:
            self.set_stages(children_stages(module))

    def forward_features(self, x: Tensor) -> Tensor:
        fn = getattr(self.model, "forward_features", None)
        out = fn(x) if callable(fn) else self.model(x)
        if out.ndim not in (2, 4):
            raise ValueError(
                f"Backbone {self.name!r} returned features of shape {tuple(out.shape)}; a "
                "backbone must return (N, C, H, W) or (N, C)."
            )
        return out


def is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """``(trainable, frozen)`` parameter counts."""
    trainable = frozen = 0
    for p in module.parameters():
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    return trainable, frozen


