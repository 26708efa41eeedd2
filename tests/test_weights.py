"""Weights from files, state dicts and torchvision's cache; never running pickled code."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import transferkit as tk
from transferkit.errors import (
    MissingWeightsFileError,
    UnsafeCheckpointError,
    WeightsError,
    WeightsMismatchError,
    WeightsUnavailableError,
)

X = torch.randn(2, 3, 64, 64)


def _features(bb):
    bb.eval()
    with torch.no_grad():
        return bb(X)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_saved_state_dict_reproduces_outputs(tmp_path, suffix):
    src = tk.load_backbone("resnet18")
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    (save_file if suffix == ".safetensors" else torch.save)(state, str(path))
    loaded = tk.load_backbone("resnet18", weights=str(path))
    assert torch.equal(_features(src), _features(loaded))
    assert loaded.weights_tag == str(path)


def test_whole_classifier_file_loads_and_drops_the_head(tmp_path):
    tv = torchvision.models.resnet18()
    path = tmp_path / "resnet18_full.pt"
    torch.save({"state_dict": tv.state_dict(), "epoch": 3}, path)  # nested, with the fc keys
    bb = tk.load_backbone("resnet18", weights=path)
    tv.fc = torch.nn.Identity()
    tv.eval()
    with torch.no_grad():
        assert torch.equal(_features(bb), tv(X))


def test_state_dict_argument_and_inception_aux_keys_dropped():
    tv = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    bb = tk.load_backbone("googlenet", weights=tv.state_dict())
    assert bb.weights_tag == "state_dict"


def test_other_architecture_lists_keys(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg11().state_dict(), path)
    with pytest.raises(WeightsMismatchError, match=r"Missing keys \(120\): .*conv1\.weight.*"
                       r"Unexpected keys \(22\): .*features\.0\.bias"):
        tk.load_backbone("resnet18", weights=path)


def test_shape_mismatch_is_named():
    state = torchvision.models.resnet18().state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    with pytest.raises(WeightsMismatchError, match=r"conv1\.weight: file \(64, 1, 7, 7\) vs "
                       r"model \(64, 3, 7, 7\)"):
        tk.load_backbone("resnet18", weights=state)


class _Evil:
    """Writes a marker file when unpickled: the code a checkpoint must never run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"conv1.weight": torch.zeros(1), "payload": _Evil(str(marker))}, f,
                   pickle_module=pickle)
    with pytest.raises(UnsafeCheckpointError, match="Refused to load .*would run code"):
        tk.load_backbone("resnet18", weights=path)
    assert not marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(MissingWeightsFileError, match=r"Weights file '.*nope\.pth' does not "
                       r"exist"):
        tk.load_backbone("resnet18", weights=str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError):
        tk.load_backbone("resnet18", weights=tmp_path / "nope.safetensors")


def test_unknown_weights_name_lists_them():
    with pytest.raises(WeightsError, match=r"no pretrained weights named 'IMAGENET1K_V9'\. "
                       r"Available: \['DEFAULT', 'IMAGENET1K_V1', 'IMAGENET1K_V2'\]"):
        tk.load_backbone("resnet50", weights="IMAGENET1K_V9")


def test_offline_download_fails_fast_with_the_file_to_place(torch_home):
    with pytest.raises(WeightsUnavailableError) as info:
        tk.load_backbone("resnet18", weights="DEFAULT")
    msg = str(info.value)
    assert "resnet18-f37072fd.pth" in msg
    assert os.path.join(str(torch_home), "hub", "checkpoints") in msg
    assert "weights=<path" in msg


def test_torch_hub_cache_is_used(torch_home):
    """The normal path: a file already in torch.hub's cache loads with no network."""
    state = torchvision.models.resnet18().state_dict()
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "resnet18-f37072fd.pth")
    bb = tk.load_backbone("resnet18", weights="IMAGENET1K_V1")
    assert bb.weights_tag == "IMAGENET1K_V1"
    assert torch.equal(bb.model.conv1.weight, state["conv1.weight"])
    assert bb.source_categories is not None and len(bb.source_categories) == 1000


def test_bad_weights_type():
    with pytest.raises(TypeError, match="weights must be None, a pretrained tag"):
        tk.load_backbone("resnet18", weights=3)
