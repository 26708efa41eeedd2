"""finetune(loggers=...): what the CSV, TensorBoard and MLflow loggers wrote, read back."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch

import transferkit as tk
from transferkit.errors import MissingDependencyError
from transferkit.training.loggers import record_metrics

from _synthetic import patterns, tiny_model

HAS_TB = importlib.util.find_spec("tensorboard") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


def _run(tmp_path, loggers, **opts):
    X, y = patterns(24, size=16)
    model = tiny_model(3, class_names=["r", "b", "g"])
    history = tk.finetune(model, (X[:18], y[:18]), (X[18:], y[18:]), epochs=2,
                          probe_epochs=1, strategy="lp_ft", progress=False, batch_size=8,
                          loggers=loggers, log_dir=tmp_path / "logs", **opts)
    return model, history


def test_csv_equals_the_history(tmp_path):
    _, history = _run(tmp_path, ["csv"])
    rows = list(csv.DictReader((tmp_path / "logs" / "history.csv").open()))
    assert len(rows) == len(history) == 3  # 1 probe epoch + 2 fine-tuning epochs
    for row, record in zip(rows, history):
        for key, value in record.items():
            if key == "lr":
                assert [float(row[f"lr_{i}"]) for i in range(len(value))] == value
                assert all(row.get(f"lr_{i}", "") == "" for i in range(len(value), 4))
            elif isinstance(value, bool):
                assert row[key] == str(value)
            elif isinstance(value, (int, float)):
                assert float(row[key]) == value, key  # repr: exact
            elif value is None:
                assert row[key] == ""
            else:
                assert row[key] == str(value)
    report = json.loads((tmp_path / "logs" / "report.json").read_text())
    assert report["n_samples"] == 6
    params = json.loads((tmp_path / "logs" / "hparams.json").read_text())
    assert params["epochs"] == 2 and params["backbone"] == "tiny_cnn_test"


@pytest.mark.skipif(not HAS_TB, reason='needs the tensorboard extra: pip install '
                    '"transferkit[tensorboard]"')
def test_tensorboard_event_file_holds_every_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, history = _run(tmp_path, ["tensorboard"])
    acc = EventAccumulator(str(tmp_path / "logs" / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for key in ("train_loss", "val_loss", "val_accuracy", "images_per_second", "lr/group0"):
        assert key in tags, (key, tags)
        events = acc.Scalars(key)
        assert [e.step for e in events] == history["epoch"]
        want = [record_metrics(r)[key] for r in history]
        assert [e.value for e in events] == pytest.approx(want, rel=1e-6)  # float32 storage
    assert "config/text_summary" in acc.Tags()["tensors"]


@pytest.mark.skipif(not HAS_MLFLOW, reason='needs the mlflow extra: pip install '
                    '"transferkit[mlflow]"')
def test_mlflow_run_holds_params_metrics_per_epoch_and_artifacts(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    model, history = _run(tmp_path, ["mlflow"])
    uri = (tmp_path / "logs" / "mlruns").absolute().as_uri()
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["transferkit"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["strategy"] == "lp_ft"
    assert run.data.params["backbone"] == "tiny_cnn_test"
    client = MlflowClient(tracking_uri=uri)
    for key in ("train_loss", "val_accuracy", "lr/group0", "images_per_second"):
        got = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(got) == [(r["epoch"], pytest.approx(record_metrics(r)[key]))
                               for r in history]
    arts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"history.json", "report.json", "model"} <= arts
    files = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.json", "model/model.safetensors"} <= files
    assert "final/accuracy" in run.data.metrics


class _Recorder(tk.Callback):
    def __init__(self):
        self.calls = []

    def on_train_start(self, trainer):
        self.calls.append("start")

    def on_epoch_end(self, trainer, record):
        self.calls.append(record["epoch"])

    def on_train_end(self, trainer, history):
        self.calls.append("end")


def test_callback_protocol_and_duck_typed_callbacks(tmp_path):
    class OnlyEpochEnd:  # no base class: still called (compatibility)
        seen = 0

        def on_epoch_end(self, trainer, record):
            OnlyEpochEnd.seen += 1

    rec = _Recorder()
    X, y = patterns(12, size=16)
    tk.finetune(tiny_model(3), (X, y), epochs=2, strategy="full", progress=False,
                callbacks=[rec, OnlyEpochEnd()])
    assert rec.calls == ["start", 0, 1, "end"] and OnlyEpochEnd.seen == 2


def test_bad_logging_options_raise_before_any_work(tmp_path, monkeypatch):
    X, y = patterns(12, size=16)
    model = tiny_model(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="unknown logger 'wandb'; expected one of"):
        tk.finetune(model, (X, y), loggers=["wandb"], log_dir=tmp_path / "l")
    with pytest.raises(ValueError, match="log_dir is given but loggers is empty"):
        tk.finetune(model, (X, y), log_dir=tmp_path / "l")
    with pytest.raises(ValueError, match="tracking_uri is for the MLflow logger"):
        tk.finetune(model, (X, y), loggers=["csv"], tracking_uri="http://x")
    with pytest.raises(TypeError, match="each logger must be one of"):
        tk.finetune(model, (X, y), loggers=[object()])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"transferkit\[mlflow\]"):
        tk.finetune(model, (X, y), loggers=["mlflow"])
    assert not (tmp_path / "l").exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_logged_run_leaves_the_model_trainable(tmp_path):
    """finish_logging evaluates the model; the weights must stay normal tensors (evaluate's
    memory-format choice inside inference_mode once turned them into inference tensors)."""
    model, _ = _run(tmp_path, ["csv"])
    assert not any(p.is_inference() for p in model.parameters())
    X, y = patterns(12, size=16)
    assert len(tk.finetune(model, (X, y), epochs=1, strategy="full", progress=False)) == 1
