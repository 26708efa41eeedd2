"""tk.export: ONNX (onnxruntime), TorchScript and ExportedProgram files equal PyTorch's outputs;
metadata travels in the file; failures name the layer; predict(runtime="onnxruntime")."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit.errors import ExportError, ExportMismatchError, MissingDependencyError
from transferkit.export import load_runner

from _synthetic import tiny_model

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason='needs the onnx extra: pip install '
                                '"transferkit[onnx]" (onnx, onnxscript, onnxruntime)')

# (backbone, load_backbone options, image size): small sizes keep the exports quick.
MODELS = [
    ("resnet18", {}, 32),
    ("efficientnet_lite0", {}, 32),
    ("mobilenet_v3_small", {}, 32),
    ("timm/vit_tiny_patch16_224", {"img_size": 32}, 32),  # a ViT, smallest config, 2x2 patches
    ("timm/resnet10t", {}, 32),
]


def _model(name: str, opts: dict, size: int) -> tk.TransferModel:
    if name.startswith("timm/"):
        pytest.importorskip("timm", reason="timm backbones need the timm extra")
    model = tk.replace_head(tk.load_backbone(name, weights=None, **opts), 4,
                            class_names=list("abcd"))
    model.backbone.data_config = model.backbone.data_config.with_image_size(size)
    return model.eval()


def _check_batches(model: nn.Module, run, size: int) -> None:
    """One file, batch 1 and batch 5: outputs equal PyTorch's within 1e-4 (float32)."""
    for n in (1, 5):
        x = torch.randn(n, 3, size, size)
        with torch.no_grad():
            want = model(x)
        torch.testing.assert_close(torch.as_tensor(run(x)), want, atol=1e-4, rtol=0)


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("name,opts,size", [pytest.param(*m, id=m[0]) for m in MODELS])
def test_onnx_matches_pytorch_at_batch_1_and_5(tmp_path, name, opts, size):
    from transferkit.onnx_runtime import OnnxModel

    model = _model(name, opts, size)
    result = tk.export(model, tmp_path / "m.onnx")
    assert result.max_abs_diff <= 1e-4 and result.checked_batch_sizes == (1, 3)
    _check_batches(model, OnnxModel(result.path), size)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "exported_program"])
@pytest.mark.parametrize("name,opts,size", [pytest.param(*m, id=m[0]) for m in MODELS])
def test_torchscript_and_exported_program_match_pytorch(tmp_path, name, opts, size, fmt):
    model = _model(name, opts, size)
    result = tk.export(model, tmp_path / f"m.{fmt}", fmt)
    _check_batches(model, load_runner(result.path, fmt), size)


@pytest.mark.parametrize("fmt", ["torchscript", "exported_program",
                                 pytest.param("onnx", marks=needs_onnx)])
def test_tiny_model_every_format_metadata_and_model_untouched(tmp_path, fmt):
    model = tiny_model(3, class_names=["x", "y", "z"])
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = tk.export(model, tmp_path / "tiny.bin", fmt)
    _check_batches(model.eval(), load_runner(result.path, fmt), 16)
    assert model.backbone.data_config.crop_size == 16
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    meta = json.loads(result.metadata_path.read_text())
    assert meta["class_names"] == ["x", "y", "z"] and meta["task"] == "multiclass"
    assert meta["data_config"]["input_size"] == [3, 16, 16]
    assert meta["data_config"]["mean"] == list(model.backbone.data_config.mean)
    if fmt == "onnx":  # the same metadata inside the file
        import onnx

        props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
        assert json.loads(props["transferkit"]) == meta


@needs_onnx
def test_predict_with_onnxruntime_equals_torch(tmp_path):
    model = tiny_model(3, class_names=["x", "y", "z"])
    path = tk.export(model, tmp_path / "tiny.onnx", image_size=24).path
    model.backbone.data_config = model.backbone.data_config.with_image_size(24)
    images = torch.randint(0, 256, (5, 3, 30, 40), dtype=torch.uint8)  # resized + cropped
    want = tk.predict(model, images, preprocess=True, top_k=2)
    got = tk.predict(str(path), images, preprocess=True, top_k=2, runtime="onnxruntime",
                     batch_size=2)
    assert [p.top_class_names for p in got] == [p.top_class_names for p in want]
    for p, q in zip(got, want):
        assert p.top_probabilities == pytest.approx(q.top_probabilities, abs=1e-5)


@needs_onnx
def test_predict_onnxruntime_errors(tmp_path):
    with pytest.raises(TypeError, match="serves an exported .onnx file"):
        tk.predict(tiny_model(), torch.rand(1, 3, 16, 16), runtime="onnxruntime")
    with pytest.raises(ValueError, match="runtime must be 'torch' or one of"):
        tk.predict(tiny_model(), torch.rand(1, 3, 16, 16), runtime="tensorrt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tk.predict(tmp_path / "nope.onnx", torch.rand(1, 3, 16, 16), runtime="onnxruntime")


class _Eig(nn.Module):
    """An operator ONNX cannot express (eigenvalues of a general matrix)."""

    def forward(self, x):
        m = x.mean((2, 3))[:, :16].reshape(-1, 4, 4)
        return torch.linalg.eigvals(m).real.sum(-1, keepdim=True).repeat(1, 3)


class _Branch(nn.Module):
    """Python control flow on a tensor's value: torch.export cannot capture it."""

    def forward(self, x):
        return x.mean((2, 3))[:, :3] if x.mean() > 0 else -x.mean((2, 3))[:, :3]


class _Counter(nn.Module):
    """Changes on every call, so a traced copy (a constant) disagrees with eager runs."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.mean((2, 3))[:, :3] * self.calls


@needs_onnx
@pytest.mark.slow
def test_unsupported_operator_names_operator_and_layer(tmp_path):
    model = tiny_model(3)
    model.head = nn.Sequential(_Eig())
    with pytest.raises(ExportError, match=r"operator aten\.linalg_eig in layer head\.0 \(_Eig\)"):
        tk.export(model, tmp_path / "bad.onnx")
    assert not list(tmp_path.iterdir())  # nothing written


def test_data_dependent_branch_names_the_layer(tmp_path):
    model = tiny_model(3)
    model.head = nn.Sequential(_Branch())
    with pytest.raises(ExportError, match=r"in layer head\.0 \(_Branch\)"):
        tk.export(model, tmp_path / "bad.pt2", "exported_program")


def test_mismatch_beyond_tolerance_raises_and_writes_nothing(tmp_path):
    model = tiny_model(3)
    model.head = nn.Sequential(_Counter())
    with pytest.raises(ExportMismatchError, match=r"differs from PyTorch by up to .* atol=0\.0001"):
        tk.export(model, tmp_path / "bad.pt", "torchscript")
    assert not list(tmp_path.iterdir())


def test_bad_arguments_raise_before_any_work(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match="format must be one of"):
        tk.export(model, tmp_path / "m", "tflite")
    with pytest.raises(TypeError, match="must be a TransferModel"):
        tk.export(nn.Linear(2, 2), tmp_path / "m")
    with pytest.raises(ValueError, match="image_size must be None or an int >= 8"):
        tk.export(model, tmp_path / "m", "torchscript", image_size=4)
    with pytest.raises(ValueError, match="opset applies to format='onnx' only"):
        tk.export(model, tmp_path / "m", "torchscript", opset=18)
    with pytest.raises(ValueError, match="opset must be None or an int >= 18"):
        tk.export(model, tmp_path / "m", opset=11)
    with pytest.raises(TypeError, match="dynamic_batch must be True or False"):
        tk.export(model, tmp_path / "m", "torchscript", dynamic_batch="yes")
    assert not list(tmp_path.iterdir())


def test_missing_onnx_extra_is_a_clear_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r'onnxscript.*transferkit\[onnx\]'):
        tk.export(tiny_model(), tmp_path / "m.onnx")


def test_fixed_batch_export(tmp_path):
    model = tiny_model(3)
    result = tk.export(model, tmp_path / "m.pt2", "exported_program", dynamic_batch=False)
    assert result.checked_batch_sizes == (1,) and result.metadata["dynamic_batch"] is False


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["exported_program", pytest.param("onnx", marks=needs_onnx)])
def test_segmentation_model_exports_with_its_task(tmp_path, fmt):
    model = tk.replace_head(tk.load_backbone("resnet18"), 3, head="unet")
    model.backbone.data_config = model.backbone.data_config.with_image_size(64)
    result = tk.export(model, tmp_path / "seg.bin", fmt)
    assert result.metadata["task"] == "segmentation" and result.metadata["dense"] is True
    run = load_runner(result.path, fmt)
    for n in (1, 5):
        x = torch.randn(n, 3, 64, 64)
        with torch.no_grad():
            want = model.eval()(x)  # (N, K, H, W)
        assert want.shape == (n, 3, 64, 64)
        torch.testing.assert_close(torch.as_tensor(run(x)), want, atol=1e-4, rtol=0)
