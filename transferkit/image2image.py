"""``predict`` for image-to-image models (called from :func:`transferkit.predict`).

Inputs are images in pixel space (tensors in ``[0, 1]`` or ``uint8``, PIL images, paths), used
at their own size (an image-to-image model keeps the scale: nothing is resized) and normalised
with the backbone's ``data_config``. Outputs come back in the targets' pixel space, clamped to
``[0, 1]``, and can be written as PNGs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._utils import resolve_device
from .errors import DataError

__all__ = ["ImagePrediction", "predict_images", "write_image_png"]


@dataclass(frozen=True)
class ImagePrediction:
    """The output of an image-to-image model for one input.

    Attributes:
        image: ``(C, H, W)`` float pixels in ``[0, 1]`` at the input's size.
        path: the PNG written for it (``out_dir=``), else ``None``.
    """

    image: Tensor
    path: Path | None = None


def write_image_png(image: Tensor, path: str | os.PathLike) -> Path:
    """Write ``(C, H, W)`` pixels in [0, 1] (C = 1 or 3) as an 8-bit PNG; returns the path."""
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    path = Path(path)
    Image.fromarray(arr).save(path)
    return path


def predict_images(model: nn.Module, inputs: Any, *, batch_size: int = 16,
                   device: str | torch.device | None = None,
                   out_dir: str | os.PathLike | None = None) -> list[ImagePrediction]:
    """Output images for each input (see :func:`transferkit.predict`).

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), 3, head="unet",
        ...                         task="image2image")
        >>> [p.image.shape for p in predict_images(model, torch.rand(2, 3, 32, 32))]
        [torch.Size([3, 32, 32]), torch.Size([3, 32, 32])]
    """
    from ._utils import inference_context
    from .data.dense import _image_tensor, batch_prep, input_items

    items = input_items(inputs)
    if not items:
        raise DataError("predict: inputs is empty; give at least one image.")
    prep = batch_prep(model.backbone.data_config, "image", train=False)
    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    results: list[ImagePrediction] = []
    with inference_context(model, dev):
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            images = [_image_tensor(im) for im, _ in chunk]
            groups: dict[tuple[int, ...], list[int]] = {}  # one forward per input shape
            for j, t in enumerate(images):
                groups.setdefault(tuple(t.shape), []).append(j)
            outs: dict[int, Tensor] = {}
            for idx in groups.values():
                x = torch.stack([images[j] for j in idx])
                x, _ = prep(x, x[:, :1].float())
                y = model(x.to(dev)).float().clamp(0, 1).cpu()  # (n, C, H, W)
                outs.update(zip(idx, y))
            for j in range(len(chunk)):
                path = None
                if out_path is not None:
                    path = write_image_png(outs[j], out_path / f"{chunk[j][1] or f'{i + j:05d}'}.png")
                results.append(ImagePrediction(outs[j], path))
    return results
