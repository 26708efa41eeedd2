"""``evaluate``: run a model over data once, without gradients, and report every metric."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ._checks import check_choice, check_int
from ._log import progress_bar
from ._utils import AMP_CHOICES, autocast, inference_context
from .data.sources import iter_eval_batches, resolve_device
from .distributed import DistContext
from .dense import evaluate_dense
from .errors import DataError
from .metrics.segmentation import SegmentationReport
from .training.memory_format import in_chosen_format
from .metrics.classification import TASKS, EvalReport, _check_options, compute_report
from .metrics.classification import expected_calibration_error
from .metrics.temperature import apply_temperature, get_temperature
from .data.tta import resolve_tta, tta_forward

__all__ = ["evaluate", "infer_task", "inference_context"]

_AMP = AMP_CHOICES


def infer_task(model: nn.Module, outputs: Tensor, targets: Tensor) -> str:
    """The task of an evaluation when none is given.

    In order: the model's own ``task`` attribute (set by training); targets with the shape of
    the outputs ``(N, K)``, ``K > 1``, are multi-hot labels -> ``"multilabel"``; float targets
    with a one-output model -> ``"regression"``; everything else -> ``"multiclass"``.
    """
    task = getattr(model, "task", None)
    if task in TASKS:
        return task
    k = outputs.shape[1] if outputs.ndim == 2 else 1
    if targets.ndim == 2 and tuple(targets.shape) == tuple(outputs.shape) and k > 1:
        return "multilabel"
    if targets.is_floating_point() and k == 1 and (targets.ndim == 1 or targets.shape[1] == 1):
        return "regression"
    return "multiclass"


def _batches(data: Any, model: nn.Module, batch_size: int, num_workers: int | None,
             device: torch.device, rank: int = 0, world: int = 1
             ) -> Iterable[tuple[Tensor, Tensor]]:
    if hasattr(model, "backbone"):
        return iter_eval_batches(data, model, batch_size=batch_size, num_workers=num_workers,
                                 device=device, rank=rank, world=world)
    if isinstance(data, DataLoader):  # a plain module: the loader's batches are ready as they are
        return ((x.to(device), y.to(device)) for x, y in data)
    raise TypeError(
        f"evaluate: {type(model).__name__} is not a TransferModel, so there is no data_config "
        "to preprocess with. Pass a TransferModel, or a DataLoader of ready (inputs, targets) "
        "batches."
    )


def _autocast(device: torch.device, amp: bool | str) -> Any:
    return autocast(amp, device)  # the rule finetune follows too


def _gather(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device,
            amp: bool | str, progress: bool, allow_empty: bool = False,
            tta: list | None = None) -> tuple[Tensor, Tensor]:
    outs: list[Tensor] = []
    ys: list[Tensor] = []
    with progress_bar(desc="evaluate", enabled=progress) as bar:
        for x, y in batches:
            with _autocast(device, amp):
                out = tta_forward(model, x, tta)  # model(x) without TTA
            outs.append(out.float().cpu())
            ys.append(torch.as_tensor(y).cpu())
            bar.update(len(x))
    if not outs and allow_empty:  # a distributed rank whose shard is empty (N < world)
        return torch.empty(0), torch.empty(0)
    if not outs:
        raise DataError("evaluate: the data gave no batches; there is nothing to evaluate.")
    return torch.cat(outs), torch.cat(ys)


def _class_names(given: Sequence[str] | None, model: nn.Module, data: Any,
                 k: int) -> list[str] | None:
    for names in (given, getattr(model, "class_names", None), getattr(data, "classes", None)):
        if names is not None and (given is names or len(names) == k):
            return list(names)
    return None


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    task: str | None = None,
    top_k: Sequence[int] = (1, 5),
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    amp: bool | str = False,
    channels_last: bool | str = "auto",
    progress: bool = True,
    class_names: Sequence[str] | None = None,
    ignore_index: int | None = None,
    examples: int = 4,
    tta: Any = None,
) -> EvalReport | SegmentationReport:
    """Evaluate ``model`` on ``data``: one pass in eval mode, then :func:`compute_report`.

    Args:
        model: a :class:`TransferModel` (or any module, with a ``DataLoader`` of ready batches).
        data: a ``Dataset``, a ``DataLoader`` (used as it is), ``(X, y)`` tensors or an image
            folder; preprocessed for evaluation from the backbone's ``data_config`` (resize,
            centre crop, normalise).
        task: ``"multiclass"``, ``"multilabel"`` or ``"regression"``; ``None`` takes
            ``model.task`` when set, else guesses from the targets (see :func:`infer_task`).
        top_k: top-k accuracies to report (``k >= num_classes`` is skipped).
        batch_size, num_workers: batching of the data (workers: ``None`` picks a default).
        device: where to run; ``None``: CUDA when present, else the CPU. The model returns to
            its own device and train/eval mode afterwards.
        amp: mixed precision: ``True`` (fp16 on CUDA, bf16 on the CPU), ``"bf16"``, ``"fp16"``
            (bf16 off CUDA), as in ``finetune`` (:func:`transferkit._utils.autocast_dtype`).
        channels_last: run channels-last (``True``), contiguous (``False``), or ``"auto"``:
            the faster, timed forward-only on the first batch once per architecture, device,
            dtype and image size in the process (``transferkit.training.memory_format``).
        progress: show a progress bar (on a terminal).
        class_names: names for the per-class figures (default: ``model.class_names``, then
            ``data.classes``).
        ignore_index: segmentation: the mask label left out of every figure (``None``: the
            one the model was trained with, else 255).
        examples: segmentation: image / truth / prediction triples kept for
            ``report.plot_overlays``.
        tta: test-time augmentation (classification): ``"flip"`` (the image and its mirror)
            or a list of torchvision v2 transforms of the preprocessed batch, each one more
            view; the logits of the original and the views are averaged
            (``transferkit.data.tta``).

    Returns:
        For a model with a dense head (segmentation), a
        :class:`~transferkit.metrics.segmentation.SegmentationReport`: each image is resized
        to the model's crop size and its logits back to its mask's own size, and every figure
        (pixel accuracy, IoU and Dice per class and their means, frequency-weighted IoU, the
        pixel confusion matrix) comes from one confusion matrix summed over the batches.
        Otherwise
        An :class:`EvalReport` with ``seconds`` and ``images_per_second`` of the pass. Under
        ``torchrun`` each process evaluates every ``world``-th sample and every rank returns
        the report of the whole data (see ``docs/distributed.md``).

    Example:
        >>> import torch, transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), num_classes=3)
        >>> X, y = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2] * 2)
        >>> report = tk.evaluate(model, (X, y), progress=False)
        >>> report.n_samples
        6
    """
    views = resolve_tta(tta, "evaluate")
    if views is not None and getattr(model, "dense", False):
        raise ValueError("evaluate: tta is for classification models; a dense head's masks "
                         "would need each view undone.")
    if getattr(model, "dense", False):  # per-pixel metrics (transferkit/dense.py)
        return evaluate_dense(model, data, task=task or model.task or "segmentation",
                              batch_size=batch_size, num_workers=num_workers, device=device,
                              amp=amp, progress=progress, class_names=class_names,
                              ignore_index=ignore_index, examples=examples)
    if task is not None and task not in TASKS:
        raise ValueError(f"evaluate: task must be None or one of {list(TASKS)}, got {task!r}.")
    check_int("evaluate", "batch_size", batch_size, 1)
    _check_options(top_k, (0.5,), 15)
    check_choice("evaluate", "amp", amp, _AMP)
    if not isinstance(channels_last, bool) and channels_last != "auto":
        raise ValueError(f"evaluate: channels_last must be True, False or 'auto', got "
                         f"{channels_last!r}.")
    dist = DistContext.from_env(resolve_device(device))
    dev = dist.device  # cuda:LOCAL_RANK under torchrun
    # Under torchrun each rank evaluates samples rank::world (each sample once); a DataLoader
    # is used whole on every rank, as it is.
    shard = dist.is_distributed and hasattr(model, "backbone") and not isinstance(
        data, DataLoader)
    start = time.perf_counter()
    with inference_context(model, dev):
        batches = _batches(data, model, batch_size, num_workers, dev,
                           *((dist.rank, dist.world) if shard else (0, 1)))
        if hasattr(model, "backbone"):
            batches = in_chosen_format(model, batches, value=channels_last,
                                       autocast=lambda: _autocast(dev, amp),
                                       batch_size=batch_size)
        outputs, targets = _gather(model, batches, dev, amp,
                                   progress and dist.is_main, allow_empty=shard, tta=views)
    if shard:  # every rank gets every sample's output, in the data's order
        outputs, targets = dist.unshard(outputs), dist.unshard(targets)
    seconds = time.perf_counter() - start
    task = task or infer_task(model, outputs, targets)
    k = outputs.shape[1] if outputs.ndim == 2 else 1
    names = _class_names(class_names, model, data, k) if task != "regression" else None
    raw, outputs = outputs, apply_temperature(model, outputs, task)  # calibrate's T, if any
    report = compute_report(targets, outputs, task=task, top_k=top_k, class_names=names)
    if outputs is not raw and len(targets):  # ECE before and after temperature scaling
        report.metrics["ece_uncalibrated"] = expected_calibration_error(
            raw.double().softmax(1).numpy(), targets.long().numpy())
        report.metrics["temperature"] = get_temperature(model)
    report.seconds = seconds
    report.data = data  # a reference, for plot_top_losses
    report.images_per_second = len(targets) / seconds if seconds > 0 else None
    return report
