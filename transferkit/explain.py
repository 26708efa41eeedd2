"""``explain``: where a classifier looks, by Grad-CAM on the backbone's deepest stage.

Grad-CAM (Selvaraju et al., 2017): with ``A`` the deepest stage's map ``(K, h, w)`` and ``y_c``
the logit of class ``c``, ``cam = ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of
``d y_c / d A_k``; the map is upsampled to the input size and scaled to [0, 1] per image.

Which implementation: captum's ``LayerGradCam`` when captum is installed and the stage gives
a map ``(N, K, h, w)`` (captum is the maintained, tested reference and users already know its
options); otherwise, and for backbones whose deepest stage is a token sequence (ViT: captum
would see tokens, not a map), a small hook-based version of the same formula, which needs
nothing beyond torch. ``Explanation.backend`` says which ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["explain", "Explanation", "METHODS"]

METHODS = ("gradcam",)


@dataclass
class Explanation:
    """What :func:`explain` returns.

    Attributes:
        heatmaps: ``(N, H, W)`` in [0, 1] at the model's input size (1 = where the evidence
            for the class is strongest).
        targets: the class explained per image (the predicted one unless given).
        probabilities: the model's probability of that class per image.
        images: ``(N, H, W, 3)`` the model's input, de-normalised to [0, 1] for display.
        overlays: ``(N, H, W, 3)`` the images blended with the heatmaps (jet colours).
        layer: the backbone module Grad-CAM ran on; backend: ``"captum"`` or ``"hooks"``.
    """

    heatmaps: Tensor
    targets: list[int]
    probabilities: list[float]
    images: np.ndarray
    overlays: np.ndarray
    layer: str
    backend: str
    class_names: list[str] | None = None

    def figure(self, path: str | Path | None = None) -> Any:
        """One row per image: the image, the heatmap, the overlay (matplotlib); saved to
        ``path`` when given."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            from .errors import MissingDependencyError

            raise MissingDependencyError('Explanation.figure needs matplotlib: pip install '
                                         '"transferkit[plot]".') from None
        n = len(self.targets)
        fig = Figure(figsize=(7.5, 2.6 * n))
        FigureCanvasAgg(fig)
        for i in range(n):
            name = self.class_names[self.targets[i]] if self.class_names else self.targets[i]
            for j, (img, title) in enumerate(((self.images[i], "image"),
                                              (self.heatmaps[i].numpy(), "Grad-CAM"),
                                              (self.overlays[i], f"{name} ({self.probabilities[i]:.2f})"))):
                ax = fig.add_subplot(n, 3, 3 * i + j + 1)
                ax.imshow(img, cmap="jet" if j == 1 else None, vmin=0, vmax=1)
                ax.set_title(title, fontsize=9)
                ax.axis("off")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


def _jet(h: np.ndarray) -> np.ndarray:
    """``(..., )`` in [0, 1] -> ``(..., 3)`` jet colours."""
    return np.stack([np.clip(1.5 - np.abs(4 * h - k), 0, 1) for k in (3, 2, 1)], axis=-1)


def _target_layer(model: nn.Module) -> tuple[str, nn.Module]:
    from .backbones._base import resolve_path

    info = model.backbone.feature_info
    if not info:
        from .errors import NoSpatialFeaturesError

        raise NoSpatialFeaturesError(
            f"explain: backbone {model.backbone.name!r} gives no spatial map, so Grad-CAM has "
            "nothing to localise on.")
    path = info[-1]["module"]
    return path, resolve_path(model.backbone, path)


def _gradcam_hooks(model: nn.Module, layer: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    saved: dict[str, Tensor] = {}

    def keep(_m, _inp, out):
        out = out[0] if isinstance(out, (tuple, list)) else out
        out.retain_grad()
        saved["a"] = out

    handle = layer.register_forward_hook(keep)
    try:
        logits = model(x)
    finally:
        handle.remove()
    logits.gather(1, targets[:, None]).sum().backward()
    a, g = saved["a"], saved["a"].grad
    to_map = model.backbone._tap_to_map
    a, g = _tokens_to_map(to_map(a.detach())), _tokens_to_map(to_map(g))  # (N, K, h, w)
    alpha = g.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    return F.relu((alpha * a).sum(dim=1, keepdim=True))  # (N, 1, h, w)


def _tokens_to_map(t: Tensor) -> Tensor:
    """A ViT's tokens ``(N, T, C)`` -> ``(N, C, h, w)``: the last ``h * w`` tokens (the patch
    grid, ``h = w = floor(sqrt(T))``; class and register tokens come first)."""
    if t.ndim != 3:
        return t
    side = int(t.shape[1] ** 0.5)
    grid = t[:, t.shape[1] - side * side:]  # (N, h*w, C)
    return grid.reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)


def _gradcam_captum(model: nn.Module, layer: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    from captum.attr import LayerGradCam

    return LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)


def _layer_gives_map(model: nn.Module, layer: nn.Module, x: Tensor) -> bool:
    shapes: list[int] = []
    handle = layer.register_forward_hook(
        lambda m, i, o: shapes.append((o[0] if isinstance(o, (tuple, list)) else o).ndim))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        handle.remove()
    return bool(shapes) and shapes[-1] == 4


def explain(
    model: nn.Module,
    images: Any,
    *,
    method: str = "gradcam",
    target: int | list[int] | None = None,
    preprocess: bool = False,
    device: str | torch.device | None = None,
    backend: str = "auto",
) -> Explanation:
    """Grad-CAM heatmaps of a classifier, on its backbone's deepest stage.

    Args:
        model: a classification :class:`TransferModel`.
        images: what :func:`transferkit.predict` takes (tensors, PIL images, image files);
            preprocessed the same way (``preprocess=True`` for raw tensor pixels).
        method: ``"gradcam"``.
        target: the class to explain, one for all or one per image (default: the predicted).
        preprocess: preprocess tensor inputs (resize, crop, normalise) as ``predict`` does.
        device: where to run (default: CUDA when present, else the CPU).
        backend: ``"auto"`` (captum when installed and the stage is a map, else hooks),
            ``"captum"`` or ``"hooks"``.

    Returns:
        An :class:`Explanation`: ``heatmaps`` ``(N, H, W)``, ``overlays``, ``figure()``.

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), 3)
        >>> tk.explain(model, torch.rand(2, 3, 64, 64)).heatmaps.shape
        torch.Size([2, 64, 64])
    """
    from .data.sources import resolve_device
    from .predict import _flatten, _prepare, _stack, eval_transform

    if method not in METHODS:
        raise ValueError(f"explain: method must be one of {list(METHODS)}, got {method!r}.")
    if backend not in ("auto", "captum", "hooks"):
        raise ValueError(f"explain: backend must be 'auto', 'captum' or 'hooks', got {backend!r}.")
    if not hasattr(model, "backbone") or getattr(model, "dense", False) or getattr(
            model, "task", None) == "regression":
        raise TypeError("explain: model must be a classification TransferModel (a backbone "
                        "and a pooled head).")
    config = model.backbone.data_config
    tf = eval_transform(config)
    x = _stack([_prepare(i, config, preprocess, tf) for i in _flatten(images)])  # (N, C, H, W)
    path, layer = _target_layer(model)
    dev = resolve_device(device)
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    home = next(model.parameters()).device
    model.eval().to(dev)
    x = x.to(dev)
    try:
        with torch.no_grad():
            probs = model(x).float().softmax(dim=1)  # (N, num_classes)
        n = len(x)
        if target is None:
            t = probs.argmax(dim=1)
        else:
            t = torch.as_tensor([target] * n if isinstance(target, int) else list(target))
            if t.shape != (n,) or (t < 0).any() or (t >= probs.shape[1]).any():
                raise ValueError(f"explain: target must be a class in [0, {probs.shape[1]}) or "
                                 f"one per image ({n}), got {target!r}.")
            t = t.to(dev)
        if backend == "captum":
            import importlib.util

            if importlib.util.find_spec("captum") is None:
                from .errors import MissingDependencyError

                raise MissingDependencyError('explain: backend="captum" needs captum: pip '
                                             'install "transferkit[explain]".')
        use_captum = backend == "captum" or (
            backend == "auto" and _has_captum() and _layer_gives_map(model, layer, x))
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            cam = (_gradcam_captum if use_captum else _gradcam_hooks)(model, layer, x, t)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = None
        for m, training in modes:
            m.training = training
        model.to(home)
    heat = F.interpolate(cam.detach().float(), size=x.shape[-2:], mode="bilinear",
                         align_corners=False)[:, 0]  # (N, H, W)
    low = heat.amin(dim=(1, 2), keepdim=True)
    span = heat.amax(dim=(1, 2), keepdim=True) - low
    heat = ((heat - low) / span.clamp_min(1e-12)).cpu()
    mean = torch.tensor(config.mean)[:, None, None]
    std = torch.tensor(config.std)[:, None, None]
    shown = (x.cpu() * std + mean).clamp(0, 1)
    shown = shown.expand(-1, 3, -1, -1) if shown.shape[1] == 1 else shown[:, :3]
    img = shown.permute(0, 2, 3, 1).numpy()
    overlay = 0.5 * img + 0.5 * _jet(heat.numpy())
    return Explanation(heat, t.tolist(), probs.gather(1, t[:, None])[:, 0].tolist(), img,
                       overlay, path, "captum" if use_captum else "hooks",
                       getattr(model, "class_names", None))


def _has_captum() -> bool:
    import importlib.util

    return importlib.util.find_spec("captum") is not None
