"""An exported ``.onnx`` file served by onnxruntime, with the metadata :func:`export` put in it.

:class:`OnnxModel` reads the data config, task and class names from the file's
``metadata_props["transferkit"]``, so :func:`transferkit.predict` preprocesses images for it
exactly as for the PyTorch model (``predict(path, images, runtime="onnxruntime")``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .backbones import DataConfig
from .errors import MissingDependencyError, ModelFormatError

__all__ = ["OnnxModel", "RUNTIMES", "METADATA_KEY", "check_onnx_dependencies"]

#: ``predict(runtime=...)`` values besides ``"torch"``.
RUNTIMES = ("onnxruntime",)
#: Key of the JSON metadata inside an exported file (ONNX metadata_props, TorchScript/pt2 extra
#: files): :func:`transferkit.export` writes it, :class:`OnnxModel` reads it.
METADATA_KEY = "transferkit"


def check_onnx_dependencies(*, runtime: bool = True, exporter: bool = True) -> None:
    """Raise :class:`MissingDependencyError` unless the ONNX extra is installed."""
    needed = (["onnx", "onnxscript"] if exporter else []) + (["onnxruntime"] if runtime else [])
    import importlib.util

    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"ONNX export and serving need {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install them with "
            'pip install "transferkit[onnx]".'
        )


class OnnxModel:
    """An onnxruntime session over a file written by :func:`transferkit.export`.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers (default: CUDA when onnxruntime has it,
            else the CPU).
        threads: intra-op threads (default: onnxruntime's choice).

    Attributes:
        data_config, task, class_names, num_classes, dense, metadata: from the file.

    Example:
        >>> m = OnnxModel("model.onnx")  # doctest: +SKIP
        >>> m(torch.rand(2, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([2, 10])
    """

    def __init__(self, path: str | os.PathLike, *, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        check_onnx_dependencies(exporter=False)
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"OnnxModel: {str(p)!r} does not exist; write it with "
                                    "transferkit.export(model, path).")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        if providers is None:
            available = ort.get_available_providers()
            providers = [x for x in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if x in available]
        try:
            self.session = ort.InferenceSession(str(p), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelFormatError(f"OnnxModel: onnxruntime cannot load {str(p)!r} ({exc}).") \
                from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise ModelFormatError(
                f"OnnxModel: {str(p)!r} has no transferkit metadata (input size, mean/std); "
                "export it with transferkit.export, or run it with onnxruntime directly.")
        self.metadata: dict[str, Any] = json.loads(raw)
        self.path = p
        self.data_config = DataConfig.from_dict(self.metadata["data_config"])
        self.task: str | None = self.metadata.get("task")
        self.class_names: list[str] | None = self.metadata.get("class_names")
        self.num_classes: int | None = self.metadata.get("num_classes")
        self.dense = bool(self.metadata.get("dense", False))
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: Tensor) -> Tensor:
        """Logits for a preprocessed batch ``(N, C, H, W)``."""
        arr = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {self._input: arr})[0])

    def __repr__(self) -> str:
        return (f"OnnxModel({str(self.path)!r}, backbone={self.metadata.get('backbone')!r}, "
                f"task={self.task!r}, input_size={self.data_config.input_size})")
