"""``save`` and ``load``: a TransferModel as ``<name>.safetensors`` + ``<name>.json``.

The format, version 1:

- ``<name>.safetensors``: the model's ``state_dict()`` (keys ``backbone.model.*``, ``head.*``),
  written with safetensors: no pickle, so loading never runs code from the file.
- ``<name>.json``: everything needed to rebuild the model before the weights go in::

    {"format": "transferkit-model", "format_version": 1, "transferkit_version": "0.1.0",
     "weights_file": "<name>.safetensors", "weights_sha256": "<SHA-256 of that file>",
     "backbone": {"name": "resnet18", "weights": "IMAGENET1K_V1", "build_kwargs": {},
                  "feature_format": "map", "num_features": 512},
     "head": {"name": "linear", "options": {"dropout": 0.2}},
     "num_classes": 3, "class_names": ["cat", "dog", "fox"], "task": "multiclass",
     ("segmentation": {"ignore_index": 255}, for a segmentation model)
     "data_config": {"input_size": [3, 224, 224], "resize_size": 256, ...},
     "frozen": {"parameters": ["backbone.model.conv1.weight", ...],
                "batchnorm_eval": ["bn1", ...]}}

``load`` rebuilds the architecture with ``load_backbone(name, weights=None, **build_kwargs)``
and ``replace_head(...)``, loads the weights strictly, then freezes what was frozen: the
parameters listed under ``frozen.parameters`` get ``requires_grad=False`` and the BatchNorm
layers under ``frozen.batchnorm_eval`` stay in eval mode in ``model.train()``, as
:func:`transferkit.freeze` left them. Files without ``"frozen"`` (transferkit 0.1.0 before it
was added) load with everything trainable.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .backbones import DataConfig, get_backbone_spec
from .freeze import freeze_state, load_freeze_state
from .errors import (
    MissingWeightsFileError,
    ModelFormatError,
    UnknownNameError,
    WeightsMismatchError,
)
from ._io import atomic_write, atomic_write_bytes, sha256_bytes
from .heads import get_head_spec
from .load_backbone import load_backbone
from .replace_head import replace_head
from .training.lora import merge_lora
from .transfer_model import TransferModel

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION", "model_paths"]

FORMAT = "transferkit-model"
FORMAT_VERSION = 1
_SUFFIXES = (".safetensors", ".json")
_REQUIRED = ("backbone", "head", "num_classes", "data_config")


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, config)`` file paths of a saved model.

    ``"runs/x/model"``, ``"runs/x/model.safetensors"`` and ``"runs/x/model.json"`` all name the
    pair ``runs/x/model.safetensors`` + ``runs/x/model.json``; any other suffix is kept as part
    of the name (``"model.v2"`` -> ``model.v2.safetensors``).
    """
    p = Path(path)
    if p.suffix in _SUFFIXES:
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


# -- save -----------------------------------------------------------------------------------
def _check_rebuildable(model: TransferModel) -> None:
    try:
        get_backbone_spec(model.backbone.name)
    except UnknownNameError:
        raise ValueError(
            f"save: the backbone {model.backbone.name!r} is not registered, so load() could not "
            "rebuild it. Build the model from a registered backbone (tk.load_backbone), or "
            "register yours with @transferkit.register_backbone."
        ) from None
    try:
        get_head_spec(model.head_name)
    except UnknownNameError:
        raise ValueError(
            f"save: the head {model.head_name!r} is not a registered head, so load() could not "
            "rebuild it. Register the head's builder with @transferkit.register_head and build "
            "the model with transferkit.replace_head(..., head=<name>)."
        ) from None


def _json_safe(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"save: {what} must be JSON values (numbers, strings, lists, dicts) so that load() "
            f"can rebuild the model; got {value!r} ({exc})."
        ) from None


def _config(model: TransferModel, weights_name: str) -> dict[str, Any]:
    from ._version import __version__

    bb = model.backbone
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "transferkit_version": __version__,
        "weights_file": weights_name,
        "backbone": {
            "name": bb.name,
            "weights": bb.weights_tag,
            "build_kwargs": _json_safe(dict(getattr(bb, "build_kwargs", {}) or {}),
                                       "the backbone's build_kwargs"),
            "feature_format": bb.feature_format,
            "num_features": bb.num_features,
        },
        "head": {"name": model.head_name,
                 "options": _json_safe(model.head_options, "the head options")},
        "num_classes": model.num_classes,
        "class_names": _json_safe(model.class_names, "class_names"),
        "task": getattr(model, "task", None),
        "temperature": getattr(model, "temperature", None),  # tk.calibrate's, or None
        **_task_settings(model),
        "data_config": bb.data_config.to_dict(),
        "frozen": freeze_state(model),  # the format checkpoints use too (freeze.py)
    }


def _task_settings(model: TransferModel) -> dict[str, Any]:
    """The settings of a dense task that evaluate and predict need after load."""
    if getattr(model, "task", None) == "segmentation":
        return {"segmentation": {"ignore_index": getattr(model, "ignore_index", 255)}}
    return {}


def _tensors(model: TransferModel) -> dict[str, Tensor]:
    """The state dict as contiguous CPU tensors; tensors sharing memory are copied apart
    (safetensors refuses shared storage)."""
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for key, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[key] = t.clone() if ptr in seen and t.numel() else t
        seen.add(ptr)
    return out


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it over ``path``
    (:func:`transferkit._io.atomic_write`: fsynced, umask honoured, a full disk named)."""
    atomic_write(path, write)


def save(model: TransferModel, path: str | os.PathLike) -> tuple[Path, Path]:
    """Save ``model`` as ``<path>.safetensors`` (weights) + ``<path>.json`` (how to rebuild it).

    Each file is written to a temporary file in the same folder and renamed into place, so an
    interrupted save never leaves a half-written file under the final name; the JSON file goes
    last. Missing parent folders are created.

    Args:
        model: a :class:`TransferModel` whose backbone and head are registered by name.
        path: ``"runs/x/model"`` (or the same with ``.safetensors`` / ``.json``).

    Returns:
        ``(weights_path, config_path)``.

    Example:
        >>> import transferkit as tk
        >>> model = tk.replace_head(tk.load_backbone("resnet18"), num_classes=3)
        >>> tk.save(model, "runs/x/model")  # doctest: +SKIP
        (PosixPath('runs/x/model.safetensors'), PosixPath('runs/x/model.json'))
    """
    from safetensors.torch import save as save_bytes

    if not isinstance(model, TransferModel):
        raise TypeError(
            f"save: model must be a TransferModel (from transferkit.replace_head), got "
            f"{type(model).__name__}. For a plain module, save its state_dict with "
            "safetensors.torch.save_file."
        )
    _check_rebuildable(model)
    model = merge_lora(model, copy_model=True)  # LoRA adapters folded in: a plain model
    weights_path, config_path = model_paths(path)
    config = _config(model, weights_path.name)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(model)
    meta = {"format": "pt", "transferkit": FORMAT}
    data = save_bytes(tensors, metadata=meta)
    # The JSON holds the weights' checksum: load() pairs a JSON only with its own weights
    # (another process saving meanwhile, or a damaged file, is detected).
    config["weights_sha256"] = sha256_bytes(data)
    atomic_write_bytes(weights_path, data)
    text = json.dumps(config, indent=2) + "\n"
    atomic_write_bytes(config_path, text.encode("utf-8"))
    return weights_path, config_path


# -- load -----------------------------------------------------------------------------------
def _read_config(config_path: Path, weights_path: Path) -> dict[str, Any]:
    if not config_path.is_file():
        if weights_path.is_file():
            raise ModelFormatError(
                f"{str(weights_path)!r} is not a saved transferkit model: the file "
                f"{config_path.name!r} that transferkit.save() writes beside it is missing. "
                "To load bare weights into a backbone use "
                "transferkit.load_backbone(name, weights=path)."
            )
        raise MissingWeightsFileError(
            f"No saved model at {str(config_path.with_suffix(''))!r}: neither "
            f"{config_path.name!r} nor {weights_path.name!r} exists. Check the path given "
            "to transferkit.save()."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(
            f"{str(config_path)!r} is not a transferkit model file: it is not valid JSON ({exc})."
        ) from None
    _check_config(config, config_path)
    return config


def _check_config(config: Any, where: Path) -> None:
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt != FORMAT:
        raise ModelFormatError(
            f"{str(where)!r} is not a transferkit model file: its \"format\" is {fmt!r}, "
            f"expected {FORMAT!r}. Models are written by transferkit.save()."
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{str(where)!r} has format_version {version!r}; this transferkit reads version "
            f"{FORMAT_VERSION} and older. Upgrade transferkit (pip install -U transferkit)."
        )
    _check_types(config, where)
    missing = [k for k in _REQUIRED if k not in config]
    for part in ("backbone", "head"):
        entry = config.get(part)
        named = isinstance(entry, dict) and isinstance(entry.get("name"), str)
        if entry is not None and not named:
            missing.append(f"{part}.name")
    if missing:
        raise ModelFormatError(
            f"{str(where)!r} is damaged: it lacks the keys {missing}. Save the model again "
            "with transferkit.save()."
        )


_TYPES: dict[str, tuple[type, ...]] = {
    "num_classes": (int,), "class_names": (list, type(None)), "task": (str, type(None)),
    "data_config": (dict,), "backbone": (dict,), "head": (dict,), "weights_file": (str,),
    "weights_sha256": (str,),
    "backbone.build_kwargs": (dict,), "backbone.weights": (str, type(None)),
    "head.options": (dict,),
}


def _check_types(config: dict[str, Any], where: Path) -> None:
    """Each known field of the JSON has its type (ModelFormatError naming the field)."""
    for key, types in _TYPES.items():
        part, _, sub = key.partition(".")
        holder = config.get(part) if sub else config
        name = sub or part
        if not isinstance(holder, dict) or name not in holder:
            continue
        value = holder[name]
        bad = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if key == "num_classes" and not bad:
            bad = value < 1
        if key == "class_names" and isinstance(value, list):
            bad = not all(isinstance(v, str) for v in value)
        if bad:
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ModelFormatError(
                f"{str(where)!r} is damaged: the field {key!r} must be {want}"
                + (" >= 1" if key == "num_classes" else "")
                + (" (of strings)" if key == "class_names" else "")
                + f", got {value!r}. Save the model again with transferkit.save()."
            )


def _rebuild(config: dict[str, Any]) -> TransferModel:
    bb, head = config["backbone"], config["head"]
    for kind, name, get in (("backbone", bb["name"], get_backbone_spec),
                            ("head", head["name"], get_head_spec)):
        try:
            get(name)
        except UnknownNameError as exc:
            raise UnknownNameError(
                f"The saved model uses the {kind} {name!r}, which is not registered here. "
                f"Custom {kind}s must be registered (import the module that calls "
                f"@transferkit.register_{kind}({name!r})) before load(). ({exc})"
            ) from None
    backbone = load_backbone(bb["name"], weights=None, **bb.get("build_kwargs", {}))
    if bb.get("feature_format", backbone.feature_format) != backbone.feature_format:
        raise ModelFormatError(
            f"The saved backbone {bb['name']!r} gave {bb['feature_format']!r} features, but the "
            f"rebuilt one gives {backbone.feature_format!r}; the architecture has changed."
        )
    backbone.data_config = DataConfig.from_dict(config["data_config"])
    backbone.weights_tag = bb.get("weights")
    model = replace_head(backbone, int(config["num_classes"]), head["name"],
                         class_names=config.get("class_names"), **head.get("options", {}))
    if config.get("task") is not None:
        model.task = config["task"]
    if config.get("temperature") is not None:
        model.temperature = float(config["temperature"])
    seg = config.get("segmentation")
    if isinstance(seg, dict) and "ignore_index" in seg:
        model.ignore_index = seg["ignore_index"]
    return model


def _refreeze(model: TransferModel, frozen: Any, where: Path) -> None:
    """Set ``requires_grad`` and the eval-mode BatchNorm layers as they were saved."""
    if frozen is not None:  # files older than the freeze state load all trainable
        load_freeze_state(model, frozen, source=repr(str(where)))


_PAIR_TRIES = 8  # reads of the pair while another process may be replacing it


def _read_pair(config_path: Path, weights_path: Path) -> tuple[dict[str, Any], Path, bytes]:
    """The JSON, the weights file it names and that file's bytes, checked against the JSON's
    ``weights_sha256``; a mismatch is read again (a save in progress ends in the new pair)."""
    for attempt in range(_PAIR_TRIES):
        config = _read_config(config_path, weights_path)
        file = config_path.with_name(Path(config.get("weights_file") or weights_path.name).name)
        if not file.is_file():
            raise MissingWeightsFileError(
                f"The weights file {str(file)!r} of this saved model is missing; save() "
                "writes it beside the .json file."
            )
        data = file.read_bytes()
        want = config.get("weights_sha256")
        if want is None or sha256_bytes(data) == want:  # files saved before checksums: None
            return config, file, data
        time.sleep(0.01 * (attempt + 1))
    raise ModelFormatError(
        f"{str(file)!r} does not match the checksum recorded in {str(config_path)!r}: the "
        "weights are damaged (or were rewritten on every read). Save the model again."
    )


def _refuse_other_formats(p: Path) -> None:
    """A file that is not one of the pair (a torch file, a text file): say what it is."""
    if p.suffix in _SUFFIXES or not p.is_file():
        return
    with open(p, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        raise ModelFormatError(
            f"{str(p)!r} is a PyTorch file (torch.save: a state dict or a checkpoint), not a "
            "model saved by transferkit.save (<name>.safetensors + <name>.json). Load its "
            "weights into a backbone with transferkit.load_backbone(name, weights=path); a "
            "training checkpoint (last.pt) resumes with finetune(..., checkpoint_dir=..., "
            "resume=True)."
        )
    raise ModelFormatError(
        f"{str(p)!r} is not a transferkit model: load() reads the pair <name>.safetensors + "
        "<name>.json that transferkit.save() writes; pass <name>."
    )


def _load_weights(model: TransferModel, weights_path: Path, device: str | torch.device,
                  data: bytes) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    try:
        state = {k: v.to(device) for k, v in load_bytes(data).items()}
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(
            f"{str(weights_path)!r} is not a valid safetensors file ({exc})."
        ) from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise WeightsMismatchError(
            f"The weights in {str(weights_path)!r} do not fit the model rebuilt from its JSON: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {shapes[:5]} "
            f"({len(missing)}, {len(unexpected)}, {len(shapes)} in all). The backbone's "
            "build_kwargs or the head options may not have been recorded."
        )
    model.load_state_dict(state, strict=True)


def load(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> TransferModel:
    """Load a model written by :func:`save`; the model is returned in eval mode.

    Only JSON and safetensors are read: nothing is unpickled. Custom backbones and heads must
    be registered (by importing the code that registers them) before calling ``load``.

    Args:
        path: what was given to ``save``: ``"runs/x/model"``, or either file of the pair.
        device: where the weights are placed.

    Returns:
        The rebuilt :class:`TransferModel` with its weights, class names, ``data_config``,
        (when it was known) ``task``, and the frozen parameters and eval-mode BatchNorm layers
        it had when it was saved.

    Raises:
        MissingWeightsFileError: no saved model at ``path``.
        ModelFormatError: not a transferkit model (no JSON, wrong format marker, missing keys).
        UnknownNameError: the backbone or head is not registered here.
        WeightsMismatchError: the weights do not fit the rebuilt architecture.

    Example:
        >>> import transferkit as tk
        >>> model = tk.load("runs/x/model")  # doctest: +SKIP
    """
    _refuse_other_formats(Path(path))
    weights_path, config_path = model_paths(path)
    config, weights_file, data = _read_pair(config_path, weights_path)
    model = _rebuild(config)
    model.to(device)
    _load_weights(model, weights_file, device, data)
    _refreeze(model, config.get("frozen"), config_path)
    return model.eval()
