"""Every torchvision classification model as a backbone, under its torchvision name.

Each architecture family says three things: which attributes are its original classifier
(removed, and dropped from weight files), how its unpooled forward runs, and how it splits into
freezing stages. Weights come from torchvision's own metadata: preprocessing, categories, URLs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision import models as tvm

from ..errors import WeightsError
from ..weights import fetch_url_state_dict, hub_cache_path
from ._api import BACKBONES
from .packaged_weights import packaged_default
from ._base import Backbone, BackboneSpec, DataConfig, WeightsInfo

__all__ = ["TorchvisionBackbone", "torchvision_weights", "backbone_from_torchvision"]

Stages = dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class _Family:
    """How one torchvision architecture family is cut into a backbone."""

    classifier: tuple[str, ...]  # attributes replaced by Identity (the original head)
    features: Callable[[nn.Module, Tensor], Tensor]  # unpooled forward of the body
    stages: Callable[[nn.Module], Stages]  # paths relative to the torchvision model
    feature_format: str = "map"
    extra_drop: tuple[str, ...] = ()  # state-dict prefixes to drop besides the classifier
    # Stage maps for dense heads: modules whose outputs are candidate maps (default: the last
    # module of each freezing stage); their layout; or a function that gives the one map.
    taps: Callable[[nn.Module], list[str]] | None = None
    tap_format: str = "NCHW"
    stage_map: Callable[[nn.Module, Tensor], Tensor] | None = None


def _seq(*names: str) -> Callable[[nn.Module, Tensor], Tensor]:
    def run(m: nn.Module, x: Tensor) -> Tensor:
        for n in names:
            x = getattr(m, n)(x)
        return x

    return run


def _split_at_pools(seq_name: str) -> Callable[[nn.Module], Stages]:
    """VGG/AlexNet/SqueezeNet: a flat Sequential cut after each max-pool into block1..blockN."""

    def stages(m: nn.Module) -> Stages:
        out: Stages = {}
        block: list[str] = []
        for i, layer in enumerate(getattr(m, seq_name)):
            block.append(f"{seq_name}.{i}")
            if isinstance(layer, nn.MaxPool2d):
                out[f"block{len(out) + 1}"] = tuple(block)
                block = []
        if block:
            out[f"block{len(out) + 1}"] = tuple(block)
        return _only_with_params(m, out)

    return stages


def _each_child(seq_name: str, tail: tuple[str, ...] = ()) -> Callable[[nn.Module], Stages]:
    """A Sequential of blocks: ``stem``, then ``stage1``..``stageN``; ``tail`` joins the last."""

    def stages(m: nn.Module) -> Stages:
        out: Stages = {}
        group: list[str] = []
        children = list(getattr(m, seq_name).named_children())
        for name, child in children:
            group.append(f"{seq_name}.{name}")
            has_blocks = any(True for _ in child.children())
            if has_blocks or name == children[-1][0]:
                out["stem" if not out else f"stage{len(out)}"] = tuple(group)
                group = []
        last = list(out)[-1]
        out[last] = out[last] + tail
        return out

    return stages


def _named(spec: Stages) -> Callable[[nn.Module], Stages]:
    return lambda m: _only_with_params(m, dict(spec))


def _only_with_params(m: nn.Module, stages: Stages) -> Stages:
    """Merge stages that hold no parameters (pool-only blocks) into the next one."""
    out: Stages = {}
    carry: tuple[str, ...] = ()
    for name, paths in stages.items():
        paths = carry + paths
        if any(True for p in paths for _ in _params_of(m, p)):
            out[name] = paths
            carry = ()
        else:
            carry = paths
    if carry and out:
        last = list(out)[-1]
        out[last] = out[last] + carry
    return out


def _params_of(m: nn.Module, path: str):
    from ._base import resolve_path

    obj = resolve_path(m, path)
    return [obj] if isinstance(obj, nn.Parameter) else list(obj.parameters())


# -- forward functions that are not a plain chain of children ---------------------------------
def _densenet(m: nn.Module, x: Tensor) -> Tensor:
    return torch.relu(m.features(x))


def _convnext(m: nn.Module, x: Tensor) -> Tensor:
    # The LayerNorm2d of ConvNeXt's classifier normalises each position's channels; applying it
    # to the map before pooling keeps the pretrained normalisation (timm's head_norm_first).
    return m.classifier[0](m.features(x))


def _swin(m: nn.Module, x: Tensor) -> Tensor:
    return m.norm(m.features(x)).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


def _vit_tokens(m: nn.Module, x: Tensor) -> Tensor:
    x = m._process_input(x)  # (N, L, C) patch tokens
    cls = m.class_token.expand(x.shape[0], -1, -1)
    return m.encoder(torch.cat([cls, x], dim=1))  # (N, 1 + L, C)


def _vit(m: nn.Module, x: Tensor) -> Tensor:
    return _vit_tokens(m, x)[:, 0]  # (N, C): torchvision's ViT pools by taking the class token


def _vit_grid(m: nn.Module, x: Tensor) -> Tensor:
    """The patch tokens of the last block as a map (N, C, H / patch, W / patch)."""
    n, _, h, w = x.shape
    tokens = _vit_tokens(m, x)[:, 1:]  # (N, L, C), the class token dropped
    return tokens.transpose(1, 2).reshape(n, tokens.shape[-1], h // m.patch_size,
                                          w // m.patch_size)


def _maxvit(m: nn.Module, x: Tensor) -> Tensor:
    x = m.stem(x)
    for block in m.blocks:
        x = block(x)
    return x


def _googlenet(m: nn.Module, x: Tensor) -> Tensor:
    x = m._transform_input(x)
    return _seq(*_GOOGLENET_BODY)(m, x)


def _inception(m: nn.Module, x: Tensor) -> Tensor:
    x = m._transform_input(x)
    return _seq(*_INCEPTION_BODY)(m, x)


def _mnasnet_stages(m: nn.Module) -> Stages:
    layers = list(m.layers.named_children())
    stem = tuple(f"layers.{n}" for n, c in layers[:8])
    blocks = {f"stage{i + 1}": (f"layers.{n}",) for i, (n, _) in enumerate(layers[8:14])}
    top = tuple(f"layers.{n}" for n, c in layers[14:])
    return {"stem": stem, **blocks, "stage7": top}


def _vit_stages(m: nn.Module) -> Stages:
    n = len(m.encoder.layers)
    out: Stages = {"stem": ("conv_proj", "class_token", "encoder.pos_embedding")}
    for i in range(n):
        out[f"block{i + 1}"] = (f"encoder.layers.encoder_layer_{i}",)
    out[f"block{n}"] += ("encoder.ln",)
    return out


_GOOGLENET_BODY = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
)
_INCEPTION_BODY = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
    "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
    "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
)
_RESNET_BODY = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")

_FAMILIES: dict[type, _Family] = {
    tvm.AlexNet: _Family(("classifier",), _seq("features"), _split_at_pools("features")),
    tvm.VGG: _Family(("classifier",), _seq("features"), _split_at_pools("features")),
    tvm.SqueezeNet: _Family(("classifier",), _seq("features"), _split_at_pools("features")),
    tvm.ResNet: _Family(
        ("fc",), _seq(*_RESNET_BODY),
        _named({"stem": ("conv1", "bn1"), **{f"layer{i}": (f"layer{i}",) for i in range(1, 5)}}),
        taps=lambda m: ["relu", "layer1", "layer2", "layer3", "layer4"],  # stem after its ReLU
    ),
    tvm.DenseNet: _Family(
        ("classifier",), _densenet,
        lambda m: {
            "stem": ("features.conv0", "features.norm0"),
            **{n: (f"features.{n}",) for n, _ in m.features.named_children()
               if n.startswith(("denseblock", "transition"))},
            "norm5": ("features.norm5",),
        },
    ),
    tvm.EfficientNet: _Family(("classifier",), _seq("features"), _each_child("features")),
    tvm.MobileNetV2: _Family(("classifier",), _seq("features"), _each_child("features")),
    tvm.MobileNetV3: _Family(("classifier",), _seq("features"), _each_child("features")),
    tvm.MNASNet: _Family(("classifier",), _seq("layers"), _mnasnet_stages),
    tvm.ShuffleNetV2: _Family(
        ("fc",), _seq("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"),
        _named({"stem": ("conv1",), "stage2": ("stage2",), "stage3": ("stage3",),
                "stage4": ("stage4",), "conv5": ("conv5",)}),
    ),
    tvm.RegNet: _Family(
        ("fc",), _seq("stem", "trunk_output"),
        lambda m: {"stem": ("stem",), **{n: (f"trunk_output.{n}",)
                                         for n, _ in m.trunk_output.named_children()}},
    ),
    tvm.ConvNeXt: _Family(
        ("classifier.2",), _convnext, _each_child("features", tail=("classifier.0",)),
    ),
    tvm.SwinTransformer: _Family(("head",), _swin, _each_child("features", tail=("norm",)),
                                 tap_format="NHWC"),
    tvm.MaxVit: _Family(
        ("classifier",), _maxvit,
        lambda m: {"stem": ("stem",),
                   **{f"block{i + 1}": (f"blocks.{i}",) for i in range(len(m.blocks))}},
    ),
    tvm.VisionTransformer: _Family(("heads",), _vit, _vit_stages, feature_format="vector",
                                   stage_map=_vit_grid),
    tvm.GoogLeNet: _Family(
        ("fc",), _googlenet,
        _named({"stem": ("conv1", "conv2", "conv3"),
                "inception3": ("inception3a", "inception3b"),
                "inception4": tuple(f"inception4{c}" for c in "abcde"),
                "inception5": ("inception5a", "inception5b")}),
        extra_drop=("aux1.", "aux2."),
    ),
    tvm.Inception3: _Family(
        ("fc",), _inception,
        _named({"stem": ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                         "Conv2d_4a_3x3"),
                "mixed5": ("Mixed_5b", "Mixed_5c", "Mixed_5d"),
                "mixed6": tuple(f"Mixed_6{c}" for c in "abcde"),
                "mixed7": ("Mixed_7a", "Mixed_7b", "Mixed_7c")}),
        extra_drop=("AuxLogits.",),
    ),
}


def _family_of(model: nn.Module) -> _Family:
    for cls in type(model).__mro__:
        if cls in _FAMILIES:
            return _FAMILIES[cls]
    raise TypeError(
        f"{type(model).__name__} is not a torchvision classification architecture that "
        "transferkit knows how to cut into a backbone. Register it with "
        "@transferkit.register_backbone, or pass a transferkit backbone."
    )


def _classifier_in_features(model: nn.Module, fam: _Family) -> int:
    from ._base import resolve_path

    head = resolve_path(model, fam.classifier[0])
    for layer in head.modules():
        if isinstance(layer, nn.Linear):
            return layer.in_features
        if isinstance(layer, nn.Conv2d):  # SqueezeNet's 1x1 conv classifier
            return layer.in_channels
    raise TypeError(f"Could not find the classifier's input size in {type(model).__name__}.")


class TorchvisionBackbone(Backbone):
    """A torchvision classification model with its classifier removed."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        data_config: DataConfig,
        weights_tag: str | None = None,
        source_categories: Any = None,
    ) -> None:
        fam = _family_of(model)
        num_features = _classifier_in_features(model, fam)
        if isinstance(model, tvm.MaxVit):
            num_features = model.classifier[2].normalized_shape[0]  # pre-logits are dropped
        if isinstance(model, (tvm.VGG, tvm.AlexNet)):  # classifier sees a flattened 7x7/6x6 map
            num_features = [m for m in model.features if isinstance(m, nn.Conv2d)][-1].out_channels
        if isinstance(model, tvm.MobileNetV3):
            num_features = model.classifier[0].in_features  # last conv, before pre-logits
        super().__init__(
            name=name,
            num_features=num_features,
            data_config=data_config,
            weights_tag=weights_tag,
            source_categories=source_categories,
        )
        from ._base import resolve_path

        for path in fam.classifier:
            parent, _, attr = path.rpartition(".")
            owner = resolve_path(model, parent) if parent else model
            if attr.isdigit():
                owner[int(attr)] = nn.Identity()
            else:
                setattr(owner, attr, nn.Identity())
        for aux in ("aux1", "aux2", "AuxLogits"):
            if getattr(model, aux, None) is not None:
                setattr(model, aux, None)
        self.model = model
        self._family = fam
        self.feature_format = fam.feature_format  # type: ignore[assignment]
        self.classifier_prefixes = tuple(p + "." for p in fam.classifier) + fam.extra_drop
        self.set_stages({k: tuple(f"model.{p}" for p in v) for k, v in fam.stages(model).items()})

    def forward_features(self, x: Tensor) -> Tensor:
        return self._family.features(self.model, x)

    # -- where the stage maps are (see _features.py) --------------------------------------
    def _candidate_paths(self) -> list[str]:
        if self._family.stage_map is not None:
            return []
        if self._family.taps is not None:
            return [f"model.{p}" for p in self._family.taps(self.model)]
        return super()._candidate_paths()

    def _tap_to_map(self, t: Tensor) -> Tensor:
        if self._family.tap_format == "NHWC" and t.ndim == 4:
            return t.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        return t

    def _stage_candidates(self, x: Tensor, keep: set[int] | None) -> dict[int, tuple[str, Tensor]]:
        if self._family.stage_map is not None:
            return {0: ("", self._family.stage_map(self.model, x))}
        return super()._stage_candidates(x, keep)


# -- weights ----------------------------------------------------------------------------------
def torchvision_weights(name: str, tag: str) -> torchvision.models.WeightsEnum:
    """The torchvision weights enum member for ``tag`` ("DEFAULT", "IMAGENET1K_V1", ...)."""
    enum = tvm.get_model_weights(name)
    short = tag.split(".", 1)[1] if tag.startswith(enum.__name__ + ".") else tag
    if short == "DEFAULT":
        return enum.DEFAULT
    if short in enum.__members__:
        return enum[short]
    raise WeightsError(
        f"Backbone {name!r} has no pretrained weights named {tag!r}. Available: "
        f"{['DEFAULT', *(m for m in enum.__members__ if m != 'DEFAULT')]}. A path to a .pth or .safetensors file also works."
    )


def _data_config(w: torchvision.models.WeightsEnum) -> DataConfig:
    t = w.transforms()
    return DataConfig(
        input_size=(3, t.crop_size[0], t.crop_size[0]),
        resize_size=t.resize_size[0],
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=t.interpolation.value,
    )


def _build_kwargs(name: str, w: Any, kwargs: dict) -> dict:
    kwargs = dict(kwargs)
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", False)
        if w is not None:
            kwargs.setdefault("transform_input", True)
    if name.startswith("vit_") and w is not None:
        kwargs["image_size"] = w.meta["min_size"][0]
    return kwargs


def _make_builder(name: str) -> Callable[..., Backbone]:
    def build(*, weights: str | None = None, **kwargs: Any) -> Backbone:
        packaged = packaged_default(name, weights)  # offline DEFAULT from a pip package
        tag = packaged.tag if packaged is not None else weights
        w = torchvision_weights(name, tag) if tag is not None else None
        ref = w or tvm.get_model_weights(name).DEFAULT
        build_kwargs = _build_kwargs(name, w, kwargs)
        model = tvm.get_model(name, weights=None, **build_kwargs)
        data_config = _data_config(ref)
        image_size = getattr(model, "image_size", None)  # ViT: fixed by construction
        if image_size is not None and image_size != data_config.crop_size:
            data_config = data_config.with_image_size(int(image_size))
        backbone = TorchvisionBackbone(
            model,
            name=name,
            data_config=data_config,
            weights_tag=str(w).split(".")[-1] if w else None,
            source_categories=ref.meta.get("categories"),
        )
        backbone.build_kwargs = build_kwargs
        if packaged is not None:
            backbone.load_weights(packaged.state_dict(backbone.model.state_dict()))
        elif w is not None:
            backbone.load_weights(fetch_url_state_dict(w.url, str(w)))
        return backbone

    build.__name__ = f"build_{name}"
    build.__doc__ = f"torchvision's {name} as a backbone."
    return build


def backbone_from_torchvision(model: nn.Module) -> TorchvisionBackbone:
    """Wrap an already built torchvision classifier (its classifier is replaced in place).

    The architecture's name is recognised by its parameter count against torchvision's weight
    metadata (``vgg16``, ``resnet50``, ...); the weights the model holds are kept as they are.
    """
    _family_of(model)  # raises a clear TypeError for anything else
    n_params = sum(p.numel() for p in model.parameters())
    name = next(
        (c for c in tvm.list_models(module=tvm)
         if tvm.get_model_weights(c).DEFAULT.meta.get("num_params") == n_params),
        None,
    )
    ref = tvm.get_model_weights(name).DEFAULT if name else None
    return TorchvisionBackbone(
        model,
        name=name or type(model).__name__.lower(),
        data_config=_data_config(ref) if ref else DataConfig(),
        weights_tag="(user's module)",
        source_categories=ref.meta.get("categories") if ref else None,
    )


def _weights_info(name: str) -> Callable[[], WeightsInfo]:
    def info() -> WeightsInfo:
        packaged = packaged_default(name, "DEFAULT")
        w = (torchvision_weights(name, packaged.tag) if packaged is not None
             else tvm.get_model_weights(name).DEFAULT)
        meta = w.meta
        metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
        return WeightsInfo(
            tag=str(w).split(".")[-1], num_params=meta.get("num_params"),
            imagenet_top1=metrics.get("acc@1"), imagenet_top5=metrics.get("acc@5"),
            gmacs=meta.get("_ops"),
            file_mb=(packaged.path().stat().st_size / 1e6 if packaged is not None
                     else meta.get("_file_size")),
            available=packaged is not None or hub_cache_path(w.url).is_file(),
            where=(f"{packaged.path()} ({packaged.note})" if packaged is not None else w.url))

    return info


def _register_all() -> None:
    for name in tvm.list_models(module=tvm):
        ref = tvm.get_model_weights(name).DEFAULT
        BACKBONES.add(
            name,
            BackboneSpec(
                name=name,
                builder=_make_builder(name),
                num_features=_NUM_FEATURES.get(name),
                family="torchvision",
                data_config=_data_config(ref),
                pretrained_tags=tuple(m for m in tvm.get_model_weights(name).__members__ if m != "DEFAULT"),
                min_input_size=max(ref.meta.get("min_size", (32, 32))[0], 32),
                source_categories=tuple(ref.meta.get("categories", ())) or None,
                description=f"torchvision {name} ({ref.meta.get('num_params', 0) / 1e6:.1f}M "
                f"params with its ImageNet head)",
                weights_info=_weights_info(name),
            ),
        )


# Pooled feature size of each architecture (checked against the built model by the tests over
# every backbone). Metadata tables are the exception to "derive, don't store".
_NUM_FEATURES: dict[str, int] = {
    "alexnet": 256, "convnext_base": 1024, "convnext_large": 1536, "convnext_small": 768,
    "convnext_tiny": 768, "densenet121": 1024, "densenet161": 2208, "densenet169": 1664,
    "densenet201": 1920, "efficientnet_b0": 1280, "efficientnet_b1": 1280, "efficientnet_b2": 1408,
    "efficientnet_b3": 1536, "efficientnet_b4": 1792, "efficientnet_b5": 2048,
    "efficientnet_b6": 2304, "efficientnet_b7": 2560, "efficientnet_v2_l": 1280,
    "efficientnet_v2_m": 1280, "efficientnet_v2_s": 1280, "googlenet": 1024, "inception_v3": 2048,
    "maxvit_t": 512, "mnasnet0_5": 1280, "mnasnet0_75": 1280, "mnasnet1_0": 1280,
    "mnasnet1_3": 1280, "mobilenet_v2": 1280, "mobilenet_v3_large": 960, "mobilenet_v3_small": 576,
    "regnet_x_16gf": 2048, "regnet_x_1_6gf": 912, "regnet_x_32gf": 2520, "regnet_x_3_2gf": 1008,
    "regnet_x_400mf": 400, "regnet_x_800mf": 672, "regnet_x_8gf": 1920, "regnet_y_128gf": 7392,
    "regnet_y_16gf": 3024, "regnet_y_1_6gf": 888, "regnet_y_32gf": 3712, "regnet_y_3_2gf": 1512,
    "regnet_y_400mf": 440, "regnet_y_800mf": 784, "regnet_y_8gf": 2016, "resnet101": 2048,
    "resnet152": 2048, "resnet18": 512, "resnet34": 512, "resnet50": 2048,
    "resnext101_32x8d": 2048, "resnext101_64x4d": 2048, "resnext50_32x4d": 2048,
    "shufflenet_v2_x0_5": 1024, "shufflenet_v2_x1_0": 1024, "shufflenet_v2_x1_5": 1024,
    "shufflenet_v2_x2_0": 2048, "squeezenet1_0": 512, "squeezenet1_1": 512, "swin_b": 1024,
    "swin_s": 768, "swin_t": 768, "swin_v2_b": 1024, "swin_v2_s": 768, "swin_v2_t": 768,
    "vgg11": 512, "vgg11_bn": 512, "vgg13": 512, "vgg13_bn": 512, "vgg16": 512, "vgg16_bn": 512,
    "vgg19": 512, "vgg19_bn": 512, "vit_b_16": 768, "vit_b_32": 768, "vit_h_14": 1280,
    "vit_l_16": 1024, "vit_l_32": 1024, "wide_resnet101_2": 2048, "wide_resnet50_2": 2048,
}

_register_all()
