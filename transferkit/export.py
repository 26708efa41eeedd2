"""``export``: a trained model as an ONNX, TorchScript or ``torch.export`` file, checked.

Every format starts from the same copy of the model (CPU, eval mode; the caller's model is not
touched) and a fixed random sample at the export size. ONNX goes through the exporter that
PyTorch maintains (``torch.export`` -> ``torch.onnx.export(dynamo=True)``, the default since
torch 2.9; it needs ``onnx`` and ``onnxscript``); the legacy TorchScript-based ONNX exporter is
deprecated and is not used. TorchScript is ``torch.jit.trace`` (deprecated by PyTorch in favour
of ``torch.export``; kept for runtimes that still load ``.pt`` TorchScript files). After writing,
the file is loaded back and run (ONNX with onnxruntime) at two batch sizes and compared with the
PyTorch model; a difference beyond the tolerance raises :class:`ExportMismatchError` and
nothing is written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._io import atomic_write, atomic_write_bytes
from .errors import ExportError, ExportMismatchError
from .onnx_runtime import METADATA_KEY, OnnxModel, check_onnx_dependencies

__all__ = ["export", "ExportResult", "FORMATS", "METADATA_KEY", "metadata_path",
           "export_metadata", "check_onnx_dependencies"]

FORMATS = ("onnx", "torchscript", "exported_program")
_MIN_OPSET = 18  # the torch.export-based ONNX exporter starts at opset 18
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "exported_program": ".pt2"}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote and what it measured.

    Attributes:
        path: the exported model file.
        metadata_path: the JSON beside it (``<path>.json``), the same metadata as in the file.
        format: ``"onnx"``, ``"torchscript"`` or ``"exported_program"``.
        max_abs_diff: largest ``|exported - PyTorch|`` over the check batches.
        checked_batch_sizes: the batch sizes the exported file was run at.
        metadata: input size, mean/std, class names, task, ... (see :func:`export_metadata`).
    """

    path: Path
    metadata_path: Path
    format: str
    max_abs_diff: float
    checked_batch_sizes: tuple[int, ...]
    metadata: dict[str, Any]


def metadata_path(path: str | os.PathLike) -> Path:
    """The JSON file written beside an exported model: ``model.onnx`` -> ``model.onnx.json``."""
    return Path(f"{os.fspath(path)}.json")


def export_metadata(model: nn.Module, data_config: Any, fmt: str, dynamic_batch: bool,
                    atol: float, rtol: float) -> dict[str, Any]:
    """What a runtime needs to serve the exported file as ``predict`` serves the model."""
    return {
        "format": "transferkit-export", "version": 1, "export_format": fmt,
        "task": getattr(model, "task", None) or "multiclass",
        "dense": bool(getattr(model, "dense", False)),
        "num_classes": getattr(model, "num_classes", None),
        "class_names": getattr(model, "class_names", None),
        "backbone": getattr(getattr(model, "backbone", None), "name", None),
        "head": getattr(model, "head_name", None),
        "data_config": data_config.to_dict(),
        "input_name": "input", "output_name": "logits",
        "dynamic_batch": dynamic_batch,
        "tolerance": {"atol": atol, "rtol": rtol},
        "torch_version": torch.__version__,
    }


# -- checks -----------------------------------------------------------------------------------
def _check_args(model: Any, path: Any, fmt: Any, image_size: Any, dynamic_batch: Any,
                opset: Any, atol: Any, rtol: Any) -> None:
    if not isinstance(model, nn.Module) or not hasattr(model, "backbone"):
        raise TypeError(f"export: model must be a TransferModel (from transferkit.replace_head), "
                        f"got {type(model).__name__}.")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"export: path must be a str or os.PathLike, got {type(path).__name__}.")
    if fmt not in FORMATS:
        raise ValueError(f"export: format must be one of {list(FORMATS)}, got {fmt!r}.")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 8):
        raise ValueError(f"export: image_size must be None or an int >= 8, got {image_size!r}.")
    if not isinstance(dynamic_batch, bool):
        raise TypeError(f"export: dynamic_batch must be True or False, got {dynamic_batch!r}.")
    if opset is not None:
        if fmt != "onnx":
            raise ValueError(f"export: opset applies to format='onnx' only, got format={fmt!r}.")
        if isinstance(opset, bool) or not isinstance(opset, int) or opset < _MIN_OPSET:
            raise ValueError(f"export: opset must be None or an int >= {_MIN_OPSET} (the "
                             f"torch.export-based ONNX exporter), got {opset!r}.")
    for name, v in (("atol", atol), ("rtol", rtol)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"export: {name} must be a number >= 0, got {v!r}.")
    if fmt == "onnx":
        check_onnx_dependencies()


# -- which layer failed -----------------------------------------------------------------------
@contextlib.contextmanager
def _layer_tracker(model: nn.Module) -> Iterator[list[str]]:
    """Track the stack of modules being run: after an error, its last entry is the failing
    layer (``"backbone.body.layer4.0.conv1 (Conv2d)"``)."""
    stack: list[str] = []
    failed: list[str] = []
    handles = []

    def pre(name: str, module: nn.Module):
        def hook(*_):
            stack.append(f"{name or '<model>'} ({type(module).__name__})")
        return hook

    def post(*_):
        if stack:
            stack.pop()

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre(name, module)))
        handles.append(module.register_forward_hook(post))
    try:
        yield failed
    except BaseException:
        failed.extend(stack)
        raise
    finally:
        for h in handles:
            h.remove()


def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return (text[:limit] + " ...") if len(text) > limit else text or type(exc).__name__


def _torch_export(model: nn.Module, sample: Tensor, dynamic_batch: bool):
    dims = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    try:
        with _layer_tracker(model) as failed:
            return torch.export.export(model, (sample,), dynamic_shapes=dims, strict=False)
    except Exception as exc:
        where = f" in layer {failed[-1]}" if failed else ""
        raise ExportError(
            f"export: torch.export could not capture the model{where}: {_first_line(exc)}. "
            "Data-dependent Python control flow and unsupported operators cannot be exported; "
            "rewrite that layer (torch.cond, tensor ops), or try format='torchscript'."
        ) from exc


_NODE = re.compile(r"translating node %(\w+)")
_OP = re.compile(r"OpOverload\(op='([\w.]+)'")


def _onnx_failure(exc: BaseException, ep: Any) -> ExportError:
    """An error that names the operator and the layer the ONNX translation failed on."""
    text = str(exc)
    op, layer = (_OP.search(text) or [None, None])[1], None
    node_name = (_NODE.search(text) or [None, None])[1]
    # The failing node of the decomposed graph by name, else the first node of the captured
    # graph whose operator starts with the failing one (aten.linalg_eigvals -> linalg_eig).
    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    match = [n for n in nodes if n.name == node_name] or [
        n for n in nodes if op and str(n.target).startswith(op)]
    for node in match[:1]:
        op = op or str(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            path, cls = list(stack.values())[-1]
            cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
            layer = f"{path or '<model>'} ({cls_name.rsplit('.', 1)[-1]})"
    what = f"operator {op}" if op else "an operator"
    where = f" in layer {layer}" if layer else ""
    summary = next((ln.strip() for ln in text.splitlines() if "No ONNX function" in ln
                    or "Failure message" in ln), _first_line(exc, 200))
    summary = re.sub(r"^<class '[\w.]+'>: ", "", summary)
    return ExportError(
        f"export: ONNX has no translation for {what}{where} ({summary}). Replace that layer "
        "with supported operations, or export format='exported_program' (no ONNX needed)."
    )


# -- the three formats ------------------------------------------------------------------------
def _write_onnx(model: nn.Module, sample: Tensor, tmp: str, meta: dict[str, Any],
                dynamic_batch: bool, opset: int | None) -> None:
    import onnx

    ep = _torch_export(model, sample, dynamic_batch)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as quiet, \
                contextlib.redirect_stdout(quiet):  # the exporter's progress lines
            warnings.simplefilter("ignore")
            program = torch.onnx.export(ep, dynamo=True, verbose=False, opset_version=opset,
                                        input_names=["input"], output_names=["logits"])
    except Exception as exc:
        raise _onnx_failure(exc, ep) from exc
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save_model(proto, tmp)  # one file (no external data): models below 2 GB


def _write_torchscript(model: nn.Module, sample: Tensor, tmp: str, meta: dict[str, Any]) -> None:
    try:
        with _layer_tracker(model) as failed, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace's own deprecation notice
            traced = torch.jit.trace(model, (sample,), check_trace=False)
    except Exception as exc:
        where = f" in layer {failed[-1]}" if failed else ""
        raise ExportError(f"export: torch.jit.trace failed{where}: {_first_line(exc)}.") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, tmp, _extra_files={METADATA_KEY: json.dumps(meta)})


def _write_exported_program(model: nn.Module, sample: Tensor, tmp: str, meta: dict[str, Any],
                            dynamic_batch: bool) -> None:
    ep = _torch_export(model, sample, dynamic_batch)
    buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2; the temporary has not
    torch.export.save(ep, buffer, extra_files={METADATA_KEY: json.dumps(meta)})
    Path(tmp).write_bytes(buffer.getvalue())


def load_runner(path: str | os.PathLike, fmt: str):
    """A callable ``(N, C, H, W) float32 tensor -> logits tensor`` over an exported file."""
    if fmt == "onnx":
        return OnnxModel(path)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(os.fspath(path), map_location="cpu")
    else:
        module = torch.export.load(io.BytesIO(Path(path).read_bytes())).module()

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return module(x)

    return run


def _compare(reference: nn.Module, runner: Any, samples: list[Tensor], atol: float,
             rtol: float, fmt: str) -> float:
    worst = 0.0
    for x in samples:
        with torch.no_grad():
            want = reference(x).float()
        got = torch.as_tensor(runner(x)).float()
        if got.shape != want.shape:
            raise ExportMismatchError(
                f"export: the exported {fmt} model gives shape {tuple(got.shape)} for a batch "
                f"of {len(x)}, PyTorch {tuple(want.shape)}. With dynamic_batch=False the file "
                "takes the export batch size only.")
        diff = (got - want).abs()
        worst = max(worst, float(diff.max()))
        bad = diff > atol + rtol * want.abs()
        if bad.any():
            raise ExportMismatchError(
                f"export: the exported {fmt} model differs from PyTorch by up to "
                f"{float(diff.max()):.3g} (batch of {len(x)}; {int(bad.sum())} of {bad.numel()} "
                f"outputs beyond atol={atol:g} + rtol={rtol:g} * |value|). Nothing was written. "
                "Check for layers that behave differently when traced, or loosen atol/rtol.")
    return worst


# -- the verb ---------------------------------------------------------------------------------
def export(
    model: nn.Module,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    image_size: int | None = None,
    dynamic_batch: bool = True,
    opset: int | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> ExportResult:
    """Export ``model`` to ``path``, run the file once and compare it with PyTorch.

    Args:
        model: a :class:`TransferModel` (classification, or a dense head: segmentation).
        path: the file to write (``.onnx``, ``.pt``, ``.pt2`` by convention).
        format: ``"onnx"`` (``torch.export`` then ONNX; served by onnxruntime, needs
            ``pip install "transferkit[onnx]"``), ``"torchscript"`` (``torch.jit.trace``) or
            ``"exported_program"`` (``torch.export.save``; load with ``torch.export.load``).
        image_size: the input size of the file (default: the backbone's ``data_config`` crop).
        dynamic_batch: one file for every batch size (else only the export batch of 1).
        opset: ONNX opset (``>= 18``; default: the exporter's).
        atol, rtol: the check passes when ``|exported - torch| <= atol + rtol * |torch|`` for
            every output (float32), at batch sizes 1 and 3 (1 without ``dynamic_batch``).

    Returns:
        An :class:`ExportResult` (file, JSON beside it, measured difference, metadata). The
        metadata (input size, mean/std, interpolation, class names, task) is also inside the
        file: ONNX ``metadata_props["transferkit"]``, the TorchScript / pt2 extra file
        ``"transferkit"``.

    Raises:
        ExportError: the model cannot be exported; names the operator and/or the layer.
        ExportMismatchError: the exported file's outputs differ beyond the tolerance (nothing
            is written then).
        MissingDependencyError: format="onnx" without onnx, onnxscript or onnxruntime.

    Example:
        >>> import transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), 3)
        >>> result = tk.export(model, "resnet18.onnx", image_size=64)  # doctest: +SKIP
        >>> result.max_abs_diff < 1e-4  # doctest: +SKIP
        True
    """
    _check_args(model, path, format, image_size, dynamic_batch, opset, atol, rtol)
    config = model.backbone.data_config
    if image_size is not None:
        config = config.with_image_size(image_size)
    meta = export_metadata(model, config, format, dynamic_batch, float(atol), float(rtol))
    reference = copy.deepcopy(model).cpu().float().eval()  # the caller's model is not touched
    if getattr(reference, "backbone", None) is not None:
        reference.backbone.data_config = config
    c, s = config.in_chans, config.crop_size
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2 if dynamic_batch else 1, c, s, s, generator=gen)  # (N, C, H, W)
    checks = [torch.randn(n, c, s, s, generator=gen) for n in ((1, 3) if dynamic_batch else (1,))]
    worst: list[float] = []

    def write(tmp: str) -> None:
        if format == "onnx":
            _write_onnx(reference, sample, tmp, meta, dynamic_batch, opset)
        elif format == "torchscript":
            _write_torchscript(reference, sample, tmp, meta)
        else:
            _write_exported_program(reference, sample, tmp, meta, dynamic_batch)
        worst.append(_compare(reference, load_runner(tmp, format), checks, atol, rtol, format))

    out = atomic_write(path, write)
    meta_file = atomic_write_bytes(metadata_path(out),
                                   (json.dumps(meta, indent=2) + "\n").encode())
    return ExportResult(out, meta_file, format, worst[0], tuple(len(x) for x in checks), meta)
