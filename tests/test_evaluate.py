"""evaluate: one pass in eval mode, figures equal to compute_report on the model's own outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import transferkit as tk
from transferkit.errors import DataError
from transferkit.evaluate import evaluate, infer_task
from transferkit.metrics.classification import compute_report


def _model(num_classes: int = 3, **kwargs) -> tk.TransferModel:
    backbone = tk.load_backbone("resnet18")
    backbone.data_config = backbone.data_config.with_image_size(32)
    return tk.replace_head(backbone, num_classes=num_classes, **kwargs)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(24, 3, 32, 32, generator=g), torch.arange(24) % 3


def test_dataloader_figures_equal_compute_report_on_model_outputs(data):
    X, y = data
    model = _model(class_names=["a", "b", "c"]).eval()
    with torch.no_grad():
        logits = model(X)
    report = evaluate(model, DataLoader(TensorDataset(X, y), batch_size=5), progress=False)
    expected = compute_report(y, logits, class_names=["a", "b", "c"])
    assert report.n_samples == 24
    assert report.accuracy == expected.accuracy
    assert report.loss == pytest.approx(expected.loss, rel=1e-5)
    assert (report.confusion_matrix == expected.confusion_matrix).all()
    assert list(report.per_class) == ["a", "b", "c"]  # names from the model
    assert report.seconds > 0 and report.images_per_second == pytest.approx(24 / report.seconds)


def test_tensor_pair_goes_through_the_data_pipeline(data):
    X, y = data
    report = evaluate(_model(), (X, y), batch_size=7, progress=False, top_k=(1, 2))
    assert report.n_samples == 24 and sorted(report.top_k) == [1, 2]


def test_train_eval_flags_of_every_submodule_are_restored(data):
    model = _model().train()
    model.backbone.model.bn1.eval()  # a frozen BatchNorm inside a training model
    evaluate(model, data, progress=False)
    assert model.training and model.head.training
    assert not model.backbone.model.bn1.training
    model.eval()
    evaluate(model, data, progress=False)
    assert not any(m.training for m in model.modules())


def test_no_gradients_are_recorded(data):
    model = _model()
    evaluate(model, data, progress=False)
    assert all(p.grad is None for p in model.parameters())


def test_task_inferred_multilabel_from_float_2d_targets(data):
    X, _ = data
    y = (torch.rand(24, 3) > 0.5).float()
    report = evaluate(_model(), (X, y), progress=False)
    assert report.task == "multilabel" and "mAP" in report.metrics


def test_task_inferred_regression_for_one_output_and_float_targets(data):
    X, _ = data
    report = evaluate(_model(num_classes=1), (X, torch.randn(24)), progress=False)
    assert report.task == "regression" and set(report.metrics) >= {"mse", "mae", "rmse", "r2"}


def test_model_task_attribute_wins(data):
    X, _ = data
    model = _model(num_classes=2)
    model.task = "multilabel"
    y = torch.zeros(24, 2)
    assert infer_task(model, torch.zeros(24, 2), y) == "multilabel"
    assert infer_task(_model(), torch.zeros(24, 3), torch.arange(24) % 3) == "multiclass"


def test_plain_module_with_dataloader(data):
    X, y = data
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    report = evaluate(net, DataLoader(TensorDataset(X, y), batch_size=8), progress=False)
    assert report.n_samples == 24
    with pytest.raises(TypeError, match=r"Sequential is not a TransferModel.*DataLoader"):
        evaluate(net, (X, y), progress=False)


def test_progress_false_is_silent(data, capsys):
    evaluate(_model(), data, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("kwargs, error, match", [
    ({"task": "ranking"}, ValueError, r"task must be None or one of"),
    ({"batch_size": 0}, ValueError, r"batch_size must be an int >= 1, got 0"),
    ({"top_k": (0,)}, ValueError, r"top_k must be ints >= 1"),
    ({"amp": "int8"}, ValueError, r"amp must be one of"),
])
def test_bad_options(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluate(_model(), data, progress=False, **kwargs)


def test_empty_loader_raises_data_error():
    empty = DataLoader(TensorDataset(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(DataError, match=r"no batches"):
        evaluate(_model(), empty, progress=False)


def test_labels_out_of_range_raise_data_error(data):
    X, _ = data
    with pytest.raises(DataError, match=r"outside \[0, 3\)"):
        evaluate(_model(), (X, torch.arange(24) % 4), progress=False)
