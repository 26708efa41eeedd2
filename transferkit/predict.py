"""``predict``: class predictions for images, image files or tensors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import check_int
from .backbones import DataConfig
from .data.sources import BatchPrep, fix_channels, resolve_device, sample_transform
from .training.memory_format import in_chosen_format
from .errors import DataError, TrainingError
from .dense import MaskPrediction, predict_dense
from ._utils import inference_context
from .metrics.temperature import apply_temperature
from .onnx_runtime import RUNTIMES, OnnxModel
from .data.tta import resolve_tta, tta_forward

__all__ = ["predict", "Prediction", "eval_transform"]


@dataclass(frozen=True)
class Prediction:
    """The prediction for one input.

    Attributes:
        index: the predicted class (highest probability).
        class_name: its name, when the model knows its class names, else ``None``.
        probability: its probability (softmax; sigmoid for a multilabel model).
        top_indices, top_class_names, top_probabilities: the ``top_k`` best classes, best first.
    """

    index: int
    class_name: str | None
    probability: float
    top_indices: tuple[int, ...]
    top_class_names: tuple[str, ...] | None
    top_probabilities: tuple[float, ...]


def eval_transform(data_config: DataConfig) -> Any:
    """The evaluation preprocessing of a PIL image for ``data_config`` (torchvision v2).

    Grey or RGBA images become RGB (for a 3-channel backbone); the shorter side is resized to
    ``resize_size``, the centre ``crop_size`` square is kept, pixels go to [0, 1] and are
    normalised with ``mean`` and ``std``. The same as :func:`transferkit.data.sample_transform`
    with ``train=False``.

    Example:
        >>> import transferkit as tk
        >>> from PIL import Image
        >>> tf = eval_transform(tk.load_backbone("resnet18").data_config)
        >>> tf(Image.new("L", (300, 260))).shape
        torch.Size([3, 224, 224])
    """
    return sample_transform(data_config, train=False)


def _flatten(inputs: Any) -> list[Any]:
    """One item per image: a PIL image, a path or a ``(C, H, W)`` tensor."""
    from PIL import Image

    if isinstance(inputs, Tensor):
        if inputs.ndim == 3:
            return [inputs]
        if inputs.ndim == 4:
            return list(inputs)
        raise DataError(
            f"predict: a tensor input must be one image (C, H, W) or a batch (N, C, H, W), got "
            f"shape {tuple(inputs.shape)}."
        )
    if isinstance(inputs, (str, os.PathLike, Image.Image)):
        return [inputs]
    if isinstance(inputs, (list, tuple)):
        return [item for x in inputs for item in _flatten(x)]
    raise TypeError(
        "predict: inputs must be a tensor (C, H, W) or (N, C, H, W), a PIL image, an image "
        f"path, or a list of those; got {type(inputs).__name__}."
    )


def _open_image(path: str | os.PathLike) -> Any:
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"predict: image file {str(p)!r} does not exist.")
    try:
        with Image.open(p) as img:
            img.load()
            return img
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"predict: cannot read {str(p)!r} as an image ({exc}).") from None


def _prepare(item: Any, config: DataConfig, preprocess: bool, tf: Any) -> Tensor:
    """One preprocessed image ``(C, H, W)``."""
    if isinstance(item, Tensor):
        if preprocess:
            return BatchPrep(config, train=False)(item[None])[0]
        if not item.is_floating_point():
            raise DataError(
                f"predict: a {item.dtype} tensor holds raw pixels, not model inputs; let "
                "predict preprocess it (preprocess=True, the default)."
            )
        if not bool(torch.isfinite(item).all()):
            raise DataError("predict: the input tensor holds NaN or infinite values.")
        return fix_channels(item[None].float(), config.in_chans)[0]
    image = _open_image(item) if isinstance(item, (str, os.PathLike)) else item
    return tf(image)


def _stack(images: list[Tensor]) -> Tensor:
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise DataError(
            f"predict: the input tensors have different shapes {sorted(shapes)[:3]}; tensors "
            "are used as they are unless preprocess=True, which resizes and crops them."
        )
    return torch.stack(images)  # (N, C, H, W)


def _check_top_k(top_k: object) -> int:
    return check_int("predict", "top_k", top_k, 1)


def _to_predictions(probs: Tensor, k: int, names: Sequence[str] | None) -> list[Prediction]:
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)  # (N, k)
    out = []
    for v, i in zip(values.tolist(), indices.tolist()):
        top_names = tuple(names[j] for j in i) if names else None
        out.append(Prediction(i[0], top_names[0] if top_names else None, v[0], tuple(i),
                              top_names, tuple(v)))
    return out


def predict(
    model: nn.Module,
    inputs: Any,
    *,
    top_k: int = 1,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    preprocess: bool = True,
    channels_last: bool | str = "auto",
    probabilities: bool = False,
    out_dir: str | os.PathLike | None = None,
    runtime: str = "torch",
    tta: Any = None,
) -> list[Prediction] | list[MaskPrediction]:
    """Predict the class of each input image (or, for a segmentation model, its mask).

    Args:
        model: a :class:`TransferModel` (its ``data_config`` preprocesses images).
        inputs: a tensor ``(C, H, W)`` or ``(N, C, H, W)``, a PIL image, an image path, or a
            list of those. Every input is preprocessed as :func:`transferkit.evaluate` does:
            PIL images and files with :func:`eval_transform`, tensors (``uint8``, or float
            pixels in [0, 1]) resized, cropped and normalised. Inputs are read, preprocessed
            and run ``batch_size`` at a time, so memory stays bounded for many files.
        top_k: how many classes each prediction lists (at most the number of classes).
        batch_size: images per forward pass.
        device: where to run; ``None``: CUDA when present, else the CPU.
        preprocess: ``False``: float tensors are already model inputs (normalised, at the
            crop size) and are used as they are; ``uint8`` tensors are refused then.
        channels_last: run channels-last (``True``), contiguous (``False``) or ``"auto"``: the
            faster, timed forward-only on the first batch when there are at least 64 images
            (else a choice made earlier in the process, or the model's current format).
        probabilities: segmentation: also return each pixel's class probabilities.
        out_dir: segmentation: write each mask as a colour-coded palette PNG here (its pixel
            values are the class indices), named after the input file (else ``00000.png``...).
        runtime: ``"torch"``, or ``"onnxruntime"``: ``model`` is then a ``.onnx`` file from
            :func:`transferkit.export` (or an :class:`~transferkit.onnx_runtime.OnnxModel`),
            served with the same preprocessing, read from the file's metadata.
        tta: test-time augmentation, as in :func:`transferkit.evaluate`: ``"flip"`` or a list
            of torchvision v2 transforms; the logits over the views are averaged.

    Returns:
        One :class:`Prediction` per image, in input order (a list even for one image). For a
        segmentation model (a dense head) one :class:`~transferkit.dense.MaskPrediction` per
        image: ``mask`` ``(H, W)`` class indices at the image's own size (the image is
        resized to the model's crop size, the logits back to the image's size),
        ``probabilities`` ``(K, H, W)`` when asked, ``path`` of the PNG written.
        Probabilities are a softmax over the classes (of the logits divided by
        ``model.temperature`` when :func:`transferkit.calibrate` set one), or per-label
        sigmoids for a model whose ``task`` is ``"multilabel"``.

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), 2, class_names=["cat", "dog"])
        >>> [p.class_name in ("cat", "dog") for p in tk.predict(model, torch.rand(2, 3, 32, 32))]
        [True, True]
    """
    k = _check_top_k(top_k)
    check_int("predict", "batch_size", batch_size, 1)
    if not isinstance(channels_last, bool) and channels_last != "auto":
        raise ValueError(f"predict: channels_last must be True, False or 'auto', got "
                         f"{channels_last!r}.")
    views = resolve_tta(tta, "predict")
    if views is not None and (runtime != "torch" or getattr(model, "dense", False)):
        raise ValueError("predict: tta is for classification models run by torch (not "
                         "segmentation, not runtime='onnxruntime').")
    if runtime != "torch":
        return _predict_exported(model, inputs, runtime=runtime, top_k=k,
                                 batch_size=batch_size, preprocess=preprocess)
    if getattr(model, "dense", False):
        return predict_dense(model, inputs, batch_size=batch_size, device=device,
                             preprocess=preprocess, probabilities=probabilities,
                             out_dir=out_dir)
    if probabilities or out_dir is not None:
        raise ValueError("predict: probabilities= and out_dir= are for segmentation models "
                         "(a dense head); a classifier's Prediction holds its probabilities.")
    task = getattr(model, "task", None)
    if task == "regression":
        raise ValueError("predict: the model's task is regression; call model(x) for its values.")
    config = model.backbone.data_config
    tf = eval_transform(config)
    items = _flatten(inputs)
    if not items:
        raise DataError("predict: inputs is empty; give at least one image.")
    dev = resolve_device(device)
    # Read and preprocess batch_size inputs at a time: memory holds one batch of images.
    parts = ((_stack([_prepare(x, config, preprocess, tf) for x in items[i:i + batch_size]])
              .to(dev), None) for i in range(0, len(items), batch_size))
    outs = []
    with inference_context(model, dev):
        for x, _ in in_chosen_format(model, parts, value=channels_last, n_images=len(items)):
            outs.append(tta_forward(model, x, views).float().cpu())
    logits = torch.cat(outs)  # (N, num_classes)
    if not bool(torch.isfinite(logits).all()):
        bad = (~torch.isfinite(logits)).any(1).nonzero().flatten()[:5].tolist()
        raise TrainingError(
            f"predict: the model's outputs are NaN or infinite (inputs {bad}); its weights "
            "hold non-finite values, as after a diverged training. Load a good checkpoint."
        )
    logits = apply_temperature(model, logits, task)  # calibrate's T, as evaluate applies it
    probs = logits.sigmoid() if task == "multilabel" else logits.softmax(dim=1)
    return _to_predictions(probs, k, getattr(model, "class_names", None))


def _predict_exported(model: Any, inputs: Any, *, runtime: str, top_k: int, batch_size: int,
                      preprocess: bool) -> list[Prediction]:
    """:func:`transferkit.predict` for an exported file: the same inputs, the same
    preprocessing (``predict``'s own, from the file's data config), the same predictions."""
    if runtime not in RUNTIMES:
        raise ValueError(f"predict: runtime must be 'torch' or one of {list(RUNTIMES)}, got "
                         f"{runtime!r}.")
    if isinstance(model, (str, os.PathLike)):
        model = OnnxModel(model)
    if not isinstance(model, OnnxModel):
        raise TypeError(
            f"predict: runtime={runtime!r} serves an exported .onnx file (a path or an "
            f"OnnxModel), got {type(model).__name__}. Export the model with "
            "transferkit.export(model, 'model.onnx') first, or use runtime='torch'.")
    if model.dense or model.task == "regression":
        raise ValueError(f"predict: runtime={runtime!r} serves classifiers; this file's task is "
                         f"{model.task!r}. Run OnnxModel(path)(x) for its raw outputs.")
    config = model.data_config
    tf = eval_transform(config)
    images = [_prepare(x, config, preprocess, tf) for x in _flatten(inputs)]
    if not images:
        raise DataError("predict: inputs is empty; give at least one image.")
    batch = _stack(images)  # (N, C, H, W)
    if not model.metadata.get("dynamic_batch", True):
        batch_size = 1
    logits = torch.cat([model(batch[i:i + batch_size]).float()
                        for i in range(0, len(batch), batch_size)])  # (N, num_classes)
    probs = logits.sigmoid() if model.task == "multilabel" else logits.softmax(dim=1)
    return _to_predictions(probs, top_k, model.class_names)
