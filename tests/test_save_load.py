"""save / load (safetensors + JSON, never pickle) and predict."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from PIL import Image
from torch import nn

import transferkit as tk
from transferkit.errors import (
    DataError,
    MissingWeightsFileError,
    ModelFormatError,
    UnknownNameError,
    WeightsMismatchError,
)
from transferkit.predict import Prediction, eval_transform, predict
from transferkit.save import FORMAT, load, model_paths, save


def _model(head: str = "linear", num_classes: int = 3, **options) -> tk.TransferModel:
    backbone = tk.load_backbone("resnet18")
    backbone.data_config = backbone.data_config.with_image_size(32)
    model = tk.replace_head(backbone, num_classes, head, class_names=["cat", "dog", "fox"][
        :num_classes] if num_classes <= 3 else None, **options)
    for m in model.modules():  # non-default BatchNorm statistics, so that buffers matter
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.9, 1.1)
    return model.eval()


@pytest.mark.parametrize("head, options", [
    ("linear", {"dropout": 0.1}),
    ("mlp", {"hidden": (16, 8), "batch_norm": True}),
], ids=["linear", "mlp"])
def test_load_gives_identical_logits(tmp_path, head, options):
    model = _model(head, **options)
    save(model, tmp_path / "model")
    loaded = load(tmp_path / "model")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert loaded.head_name == head and loaded.class_names == ["cat", "dog", "fox"]
    assert loaded.head_options == json.loads(json.dumps(options))  # tuples come back as lists


def test_json_content(tmp_path):
    model = _model()
    model.task = "multiclass"
    weights, config = save(model, tmp_path / "run" / "model.safetensors")
    assert (weights, config) == model_paths(tmp_path / "run" / "model")
    assert (weights.name, config.name) == ("model.safetensors", "model.json")
    meta = json.loads(config.read_text())
    assert meta["format"] == FORMAT == "transferkit-model"
    assert meta["format_version"] == 1
    assert meta["transferkit_version"] == tk.__version__
    assert meta["weights_file"] == "model.safetensors"
    assert meta["backbone"] == {"name": "resnet18", "weights": None, "build_kwargs": {},
                                "feature_format": "map", "num_features": 512}
    assert meta["head"] == {"name": "linear", "options": {}}
    assert meta["num_classes"] == 3 and meta["class_names"] == ["cat", "dog", "fox"]
    assert meta["task"] == "multiclass"
    assert meta["data_config"] == model.data_config.to_dict()
    assert meta["frozen"] == {"parameters": [], "batchnorm_eval": []}


def test_frozen_layers_are_restored(tmp_path):
    model = _model()
    summary = tk.freeze(model, upto="layer2")  # stem, layer1, layer2; their BatchNorm in eval
    save(model, tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert ({n: p.requires_grad for n, p in loaded.named_parameters()}
            == {n: p.requires_grad for n, p in model.named_parameters()})
    assert loaded.backbone._frozen_bn == model.backbone._frozen_bn != set()
    loaded.train()  # frozen BatchNorm stays in eval mode, the others train
    bn = {n: m.training for n, m in loaded.backbone.named_modules()
          if isinstance(m, nn.BatchNorm2d)}
    assert bn == {n: n not in model.backbone._frozen_bn for n in bn}
    assert set(bn.values()) == {True, False}
    assert tk.unfreeze(loaded).frozen == 0 < summary.frozen


def test_file_without_frozen_entry_loads_everything_trainable(tmp_path):
    model = _model()
    tk.freeze(model)
    save(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    del meta["frozen"]  # as written before the entry was added
    (tmp_path / "m.json").write_text(json.dumps(meta))
    loaded = load(tmp_path / "m")
    assert all(p.requires_grad for p in loaded.parameters())
    assert loaded.backbone._frozen_bn == set()


def test_data_config_and_task_are_restored(tmp_path):
    model = _model()
    model.task = "multilabel"
    save(model, tmp_path / "m")
    loaded = load(tmp_path / "m.json")
    assert loaded.data_config == model.data_config and loaded.data_config.crop_size == 32
    assert loaded.task == "multilabel"


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path, monkeypatch):
    save(_model(), tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]

    import transferkit._io

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(transferkit._io.os, "replace", broken)  # fails after the write
    with pytest.raises(OSError, match="disk full"):
        save(_model(), tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_load_never_unpickles(tmp_path, monkeypatch):
    save(_model(), tmp_path / "m")

    def refuse(*args, **kwargs):
        raise AssertionError("load() must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert isinstance(load(tmp_path / "m"), tk.TransferModel)


def test_custom_registered_head_round_trip(tmp_path):
    @tk.register_head("test_save_two_layer", replace=True)
    def two_layer(in_features, num_classes, hidden=4):
        return nn.Sequential(tk.heads.GlobalPool(), nn.Linear(in_features, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))

    model = _model("test_save_two_layer", hidden=5)
    save(model, tmp_path / "m")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load(tmp_path / "m")(x), model(x))


# -- files that are not transferkit models ---------------------------------------------------
def _saved(tmp_path, edit=None):
    save(_model(), tmp_path / "m")
    if edit is not None:
        meta = json.loads((tmp_path / "m.json").read_text())
        edit(meta)
        (tmp_path / "m.json").write_text(json.dumps(meta))
    return tmp_path / "m"


def test_missing_model(tmp_path):
    with pytest.raises(MissingWeightsFileError, match=r"No saved model at .*neither 'x.json'"):
        load(tmp_path / "x")
    assert issubclass(MissingWeightsFileError, FileNotFoundError)


def test_bare_safetensors_without_json(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelFormatError, match=r"not a saved transferkit model.*'w.json'.*"
                                                r"load_backbone\(name, weights=path\)"):
        load(tmp_path / "w.safetensors")


def test_json_of_another_format(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"format": "keras", "layers": []}))
    with pytest.raises(ModelFormatError, match=r"not a transferkit model file: its \"format\" "
                                                r"is 'keras', expected 'transferkit-model'"):
        load(tmp_path / "cfg.json")
    (tmp_path / "cfg.json").write_text("not json {")
    with pytest.raises(ModelFormatError, match=r"not valid JSON"):
        load(tmp_path / "cfg")


@pytest.mark.parametrize("edit, error, match", [
    (lambda m: m.pop("head"), ModelFormatError, r"lacks the keys \['head'\]"),
    (lambda m: m.update(format_version=2), ModelFormatError, r"format_version 2.*Upgrade"),
    (lambda m: m["head"].update(name="no_such_head"), UnknownNameError,
     r"uses the head 'no_such_head', which is not registered here.*before load\(\)"),
    (lambda m: m["backbone"].update(name="no_such_net"), UnknownNameError,
     r"uses the backbone 'no_such_net'.*register_backbone"),
    (lambda m: m.update(num_classes=4, class_names=None), WeightsMismatchError,
     r"do not fit the model.*head\.2\.weight: file \(3, 512\) vs model \(4, 512\)"),
    (lambda m: m["backbone"].update(feature_format="vector"), ModelFormatError,
     r"architecture has changed"),
    (lambda m: m.update(frozen=["conv1"]), ModelFormatError,
     r"damaged: \"frozen\" must be .*Save the model again"),
    (lambda m: m["frozen"].update(parameters=["backbone.model.conv9.weight"]), ModelFormatError,
     r"frozen layers that the rebuilt model does not have: \['backbone.model.conv9.weight'\]"),
], ids=["missing-key", "newer-version", "unknown-head", "unknown-backbone", "mismatch",
        "feature-format", "frozen-not-a-dict", "frozen-unknown-layer"])
def test_damaged_or_unloadable_json(tmp_path, edit, error, match):
    path = _saved(tmp_path, edit)
    with pytest.raises(error, match=match):
        load(path)


def test_missing_weights_file(tmp_path):
    path = _saved(tmp_path)
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(MissingWeightsFileError, match=r"weights file .* is missing"):
        load(path)


def test_save_refuses_what_load_cannot_rebuild(tmp_path):
    model = _model()
    custom = tk.TransferModel(model.backbone, nn.Linear(512, 3), 3)  # head_name "custom"
    with pytest.raises(ValueError, match=r"head 'custom' is not a registered head.*register_head"):
        save(custom, tmp_path / "m")
    with pytest.raises(TypeError, match=r"must be a TransferModel.*got Linear"):
        save(nn.Linear(2, 2), tmp_path / "m")
    model.head_options = {"fn": print}
    with pytest.raises(TypeError, match=r"head options must be JSON values"):
        save(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


# -- predict --------------------------------------------------------------------------------
def test_predict_on_tensors():
    model = _model()
    x = torch.rand(4, 3, 32, 32)
    preds = predict(model, x, top_k=2, device="cpu", preprocess=False)  # model-ready inputs
    with torch.no_grad():
        probs = model(x).softmax(1)
    assert len(preds) == 4 and all(isinstance(p, Prediction) for p in preds)
    for p, row in zip(preds, probs):
        assert p.index == int(row.argmax())
        assert p.class_name == ["cat", "dog", "fox"][p.index]
        assert p.probability == pytest.approx(float(row.max()), rel=1e-5)
        assert len(p.top_indices) == 2 and p.top_indices[0] == p.index
        assert p.top_probabilities[0] >= p.top_probabilities[1]
        assert p.top_class_names == tuple(["cat", "dog", "fox"][i] for i in p.top_indices)
    assert len(predict(model, x[0], top_k=10, preprocess=False)[0].top_indices) == 3  # clipped


def test_predict_on_pil_image_and_path_matches_eval_transform(tmp_path):
    model = _model()
    image = Image.fromarray((torch.rand(40, 48, 3) * 255).byte().numpy())
    image.save(tmp_path / "img.png")
    grey = image.convert("L")
    by_image, by_path, by_grey = predict(model, [image, tmp_path / "img.png", grey])
    x = eval_transform(model.data_config)(image)
    assert x.shape == (3, 32, 32)
    with torch.no_grad():
        expected = model(x[None]).softmax(1)[0]
    assert by_image.probability == pytest.approx(float(expected.max()), rel=1e-5)
    assert by_path == by_image  # PNG is lossless
    assert by_grey.class_name in ("cat", "dog", "fox")  # grey is repeated to 3 channels


def test_predict_preprocess_tensor(tmp_path):
    model = _model()
    raw = (torch.rand(3, 50, 60) * 255).byte()
    (p,) = predict(model, raw, preprocess=True)
    assert 0 < p.probability <= 1


@pytest.mark.parametrize("inputs, kwargs, error, match", [
    (42, {}, TypeError, r"inputs must be a tensor .* got int"),
    (torch.rand(3, 32), {}, DataError, r"one image \(C, H, W\) or a batch"),
    ([], {}, DataError, r"inputs is empty"),
    ("/nonexistent/x.png", {}, FileNotFoundError, r"image file '/nonexistent/x.png' does not"),
    ([torch.rand(3, 32, 32), torch.rand(3, 40, 40)], {"preprocess": False}, DataError,
     r"different shapes.*preprocess=True"),
    (torch.rand(3, 32, 32), {"top_k": 0}, ValueError, r"top_k must be an int >= 1, got 0"),
])
def test_predict_errors(inputs, kwargs, error, match):
    with pytest.raises(error, match=match):
        predict(_model(), inputs, **kwargs)


def test_predict_unreadable_file_and_regression(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot read .*bad.png' as an image"):
        predict(_model(), tmp_path / "bad.png")
    model = _model(num_classes=1)
    model.task = "regression"
    with pytest.raises(ValueError, match=r"task is regression"):
        predict(model, torch.rand(3, 32, 32))
