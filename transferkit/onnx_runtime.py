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
from .errors import ModelFormatError

__all__ = ["OnnxModel", "predict_exported", "RUNTIMES"]

#: ``predict(runtime=...)`` values besides ``"torch"``.
RUNTIMES = ("onnxruntime",)


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
        from .export import METADATA_KEY, check_onnx_dependencies

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


def predict_exported(model: Any, inputs: Any, *, runtime: str, top_k: int, batch_size: int,
                     preprocess: bool) -> list:
    """:func:`transferkit.predict` for an exported file: the same inputs, the same
    preprocessing (``predict``'s own, from the file's data config), the same predictions."""
    from .predict import _flatten, _prepare, _stack, _to_predictions, eval_transform

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
        from .errors import DataError

        raise DataError("predict: inputs is empty; give at least one image.")
    batch = _stack(images)  # (N, C, H, W)
    if not model.metadata.get("dynamic_batch", True):
        batch_size = 1
    logits = torch.cat([model(batch[i:i + batch_size]).float()
                        for i in range(0, len(batch), batch_size)])  # (N, num_classes)
    probs = logits.sigmoid() if model.task == "multilabel" else logits.softmax(dim=1)
    return _to_predictions(probs, top_k, model.class_names)
