"""``evaluate`` and ``predict`` for models with a dense head (called from those verbs).

One pass structure for every dense task: batches of ``(inputs, targets)`` preprocessed as
evaluation pairs (:mod:`transferkit.data.dense`: the input resized to the crop size, the
target kept at its own resolution), a forward in eval mode under ``torch.inference_mode``,
and a task *meter* that accumulates what the report needs (segmentation: one pixel confusion
matrix, :class:`~transferkit.metrics.segmentation.SegmentationMeter`). Under ``torchrun``
each process evaluates every ``world``-th sample and the meters are summed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._log import progress_bar
from ._utils import autocast, inference_context, resolve_device
from .data.dense import batch_prep, input_items
from .data.sources import as_source, default_workers
from .distributed import DistContext
from .errors import DataError
from .metrics.segmentation import (DEFAULT_IGNORE_INDEX, SegmentationMeter, class_map,
                                   palette, resize_logits)
from ._tasks import DENSE_TASKS, dense_target

__all__ = ["evaluate_dense", "predict_dense", "MaskPrediction", "model_ignore_index"]


def model_ignore_index(model: nn.Module, given: int | None = None) -> int | None:
    """``given``, else the ``ignore_index`` the model was trained with, else 255."""
    if given is not None:
        return given
    return getattr(model, "ignore_index", DEFAULT_IGNORE_INDEX)


def _meter(task: str, model: nn.Module, *, class_names, ignore_index, examples: int):
    config = model.backbone.data_config
    if task == "segmentation":
        names = class_names or getattr(model, "class_names", None)
        return SegmentationMeter(model.num_classes, ignore_index=ignore_index,
                                 class_names=names, examples=examples, mean=config.mean,
                                 std=config.std)
    if task == "image2image":
        from .metrics.image2image import Image2ImageMeter
        from .training.perceptual import shared_perceptual_loss

        return Image2ImageMeter(shared_perceptual_loss(), examples=examples, mean=config.mean,
                                std=config.std)
    raise ValueError(f"evaluate: no metrics for dense task {task!r}; dense tasks: "
                     f"{list(DENSE_TASKS)}.")


def evaluate_dense(model: nn.Module, data: Any, *, task: str, batch_size: int = 16,
                   num_workers: int | None = None, device: str | torch.device | None = None,
                   amp: bool | str = False, progress: bool = True, class_names=None,
                   ignore_index: int | None = None, examples: int = 4) -> Any:
    """One evaluation pass of a dense model; the task's report (see the module docstring)."""
    import time


    if task not in DENSE_TASKS:
        raise ValueError(f"evaluate: the model's head is dense, so task must be one of "
                         f"{list(DENSE_TASKS)}, got {task!r}.")
    dist = DistContext.from_env(resolve_device(device))
    dev = dist.device
    config = model.backbone.data_config
    target = dense_target(task)
    source = as_source(data, config, train=False, augment=False, target=target)
    if source.targets is not None:  # masks known up front: checked before the pass
        from .training.losses import check_targets

        check_targets(source.targets, task, model.num_classes, images=source.X,
                      ignore_index=model_ignore_index(model, ignore_index))
    order = source.indices(0, shuffle=False, seed=0, rank=dist.rank, world=dist.world,
                           pad=False)
    meter = _meter(task, model, class_names=class_names, examples=examples,
                   ignore_index=model_ignore_index(model, ignore_index))
    workers = default_workers(source) if num_workers is None else num_workers
    start = time.perf_counter()
    with inference_context(model, dev), progress_bar(
            desc="evaluate", enabled=progress and dist.is_main) as bar:
        for x, y in source.batches(order, batch_size=batch_size, device=dev,
                                   prep=batch_prep(config, target, train=False),
                                   num_workers=workers):
            with autocast(amp, dev):
                out = model(x)
            meter.update(out.float(), y, x)
            bar.update(len(x))
    meter.all_reduce(dist)
    report = meter.report()
    if report.n_samples == 0:
        raise DataError("evaluate: the data gave no batches; there is nothing to evaluate.")
    report.seconds = time.perf_counter() - start
    report.images_per_second = report.n_samples / report.seconds if report.seconds else None
    return report


# -- predict --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskPrediction:
    """The prediction of a segmentation model for one image.

    Attributes:
        mask: ``(H, W)`` int64 class indices at the input image's own size.
        probabilities: ``(K, H, W)`` softmax probabilities (only with ``probabilities=True``).
        class_names: the model's class names (index = mask value), or ``None``.
        path: the colour-coded PNG written for it (``out_dir=``), else ``None``.
    """

    mask: Tensor
    probabilities: Tensor | None = None
    class_names: tuple[str, ...] | None = None
    path: Path | None = None


def write_mask_png(mask: Tensor, path: str | os.PathLike, num_classes: int) -> Path:
    """Write ``mask`` as a palette PNG: the pixel values are the class indices (read back as
    indices by the folder loader) and the palette colours them (:func:`~transferkit.metrics.
    segmentation.palette`)."""
    from PIL import Image

    if num_classes > 256:
        raise ValueError(f"predict: a palette PNG holds at most 256 classes, the model has "
                         f"{num_classes}.")
    im = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P")
    im.putpalette(palette(num_classes)[:256].flatten().tolist())
    path = Path(path)
    im.save(path)
    return path


def predict_dense(model: nn.Module, inputs: Any, *, batch_size: int = 16,
                  device: str | torch.device | None = None, preprocess: bool = False,
                  probabilities: bool = False, out_dir: str | os.PathLike | None = None
                  ) -> list[MaskPrediction]:
    """Masks for each input (see :func:`transferkit.predict`)."""

    if getattr(model, "task", None) == "image2image":  # images, not masks
        from .image2image import predict_images

        return predict_images(model, inputs, batch_size=batch_size, device=device,
                              out_dir=out_dir)  # type: ignore[return-value]
    if getattr(model, "task", None) not in (None, "segmentation"):
        raise ValueError(f"predict: masks come from a segmentation model; this dense model's "
                         f"task is {model.task!r}.")
    items = input_items(inputs)
    if not items:
        raise DataError("predict: inputs is empty; give at least one image.")
    config = model.backbone.data_config
    prep = batch_prep(config, "mask", train=False)
    from .data.dense import _image_tensor

    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    names = tuple(model.class_names) if getattr(model, "class_names", None) else None
    results: list[MaskPrediction] = []
    with inference_context(model, dev):
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            images = [_image_tensor(im) for im, _ in chunk]
            sizes = [tuple(t.shape[-2:]) for t in images]
            prepped = []
            for (im, _), t, size in zip(chunk, images, sizes):
                if preprocess or not isinstance(im, Tensor):  # files and PIL images always
                    t = prep(t[None], torch.zeros(1, *size, dtype=torch.long))[0][0]
                prepped.append(t.float())
            if len({tuple(t.shape) for t in prepped}) > 1:
                raise DataError("predict: the input tensors have different shapes; tensors are "
                                "used as they are unless preprocess=True, which resizes them.")
            x = torch.stack(prepped)
            logits = model(x.to(dev)).float().cpu()  # (n, K, h, w)
            for j, (lo, size) in enumerate(zip(logits, sizes)):
                lo = resize_logits(lo[None], size)[0]  # at the image's own size
                mask = class_map(lo[None])[0]
                path = None
                if out_path is not None:
                    stem = chunk[j][1] or f"{i + j:05d}"
                    path = write_mask_png(mask, out_path / f"{stem}.png", model.num_classes)
                results.append(MaskPrediction(mask, lo.softmax(0) if probabilities else None,
                                              names, path))
    return results
