"""Experiment loggers for ``finetune(loggers=[...], log_dir=...)``: CSV, TensorBoard, MLflow.

Each logger is a :class:`~transferkit.training.callbacks.Callback`: at ``on_train_start`` it
logs the configuration as hyperparameters, at every ``on_epoch_end`` the epoch's History record
(losses, metrics, ``lr/group<i>`` per parameter group, images per second; step = epoch), and
:meth:`Logger.log_final` (called by ``finetune`` after training) the final evaluation report
and the saved model. Only the main process of a distributed run logs. Nothing is created
before training starts, so a ``finetune`` call that fails its checks leaves no files.

- ``"csv"``: ``log_dir/history.csv``, one row per epoch (rewritten atomically each epoch;
  columns: the record's keys, ``lr`` split into ``lr_0``, ``lr_1``...), ``log_dir/report.json``.
- ``"tensorboard"``: ``torch.utils.tensorboard.SummaryWriter`` in ``log_dir/tensorboard``;
  scalars per record key, the config as text and as HParams (with the final metrics).
- ``"mlflow"``: one MLflow run through ``MlflowClient`` (no global MLflow state is changed);
  the store is ``tracking_uri`` when given, else the local file store ``log_dir/mlruns``
  (MLflow 3 keeps that backend in maintenance mode and asks for the opt-in
  ``MLFLOW_ALLOW_FILE_STORE=true``, which this logger sets for its default store only).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes
from ..errors import MissingDependencyError
from .callbacks import Callback

__all__ = ["Logger", "CSVLogger", "TensorBoardLogger", "MLflowLogger", "LOGGERS",
           "make_loggers", "check_loggers", "record_metrics", "hyperparameters"]

DEFAULT_LOG_DIR = "runs/logs"


# -- what is logged ---------------------------------------------------------------------------
def record_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one History record: every int/float value but ``epoch``; ``lr`` (one
    per parameter group) as ``lr/group<i>``; strings, flags and ``None`` are left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or value is None:
            continue
        if key == "lr" and isinstance(value, (list, tuple)):
            out.update({f"lr/group{i}": float(v) for i, v in enumerate(value)})
        elif isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json.dumps(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return json.dumps([_scalar(v) for v in value])
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return type(value).__name__


def hyperparameters(config: Any, model: Any = None) -> dict[str, str | int | float | bool | None]:
    """The run's configuration as flat scalars: every :class:`FinetuneConfig` field (objects
    by name, callbacks by class name) and the model's backbone, weights, head, classes."""
    params: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in ("callbacks", "loggers"):
            value = json.dumps([v if isinstance(v, str) else type(v).__name__ for v in value])
        params[f.name] = _scalar(value)
    if model is not None:
        bb = getattr(model, "backbone", None)
        params.update({"backbone": getattr(bb, "name", None),
                       "weights": getattr(bb, "weights_tag", None),
                       "head": getattr(model, "head_name", None),
                       "num_classes": getattr(model, "num_classes", None)})
    return params


# -- the loggers ------------------------------------------------------------------------------
class Logger(Callback):
    """Base class: subclasses implement ``_start``, ``_log_metrics``, ``_log_final``, ``_close``.

    Args:
        log_dir: the folder this logger writes under.
    """

    name = "logger"

    def __init__(self, log_dir: str | os.PathLike = DEFAULT_LOG_DIR) -> None:
        self.log_dir = Path(log_dir)
        self.started = False
        self.params: dict[str, Any] = {}

    # Callback hooks
    def on_train_start(self, trainer: Any) -> None:
        if not _is_main(trainer):
            return
        self.params = hyperparameters(trainer.cfg, trainer.model)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._start(self.params)
        self.started = True

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        if self.started:
            self._log_metrics(dict(record), int(record.get("epoch", 0)))

    def log_final(self, *, history: Any, report: Any = None,
                  model_dir: str | os.PathLike | None = None) -> None:
        """The final evaluation report (an ``EvalReport``) and the saved model's folder."""
        if self.started:
            self._log_final(history, report, None if model_dir is None else Path(model_dir))

    def close(self, *, failed: bool = False) -> None:
        """Flush and end the run (``failed``: training raised)."""
        if self.started:
            self._close(failed)
            self.started = False

    # to implement
    def _start(self, params: dict[str, Any]) -> None: ...
    def _log_metrics(self, record: dict[str, Any], step: int) -> None: ...
    def _log_final(self, history: Any, report: Any, model_dir: Path | None) -> None: ...
    def _close(self, failed: bool) -> None: ...


def _is_main(trainer: Any) -> bool:
    dist = getattr(trainer, "dist", None)
    return bool(getattr(dist, "is_main", True))


def _report_dict(report: Any) -> dict[str, Any] | None:
    return None if report is None else report.to_dict()


def csv_columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column names of the CSV: record keys in first-seen order, ``lr`` as ``lr_<i>``."""
    cols: list[str] = []
    for r in records:
        for key, value in r.items():
            names = ([f"lr_{i}" for i in range(len(value))]
                     if key == "lr" and isinstance(value, (list, tuple)) else [key])
            cols += [n for n in names if n not in cols]
    return cols


class CSVLogger(Logger):
    """``log_dir/history.csv``: one row per epoch; floats written with ``repr`` (exact)."""

    name = "csv"

    def _start(self, params: dict[str, Any]) -> None:
        self.records: list[dict[str, Any]] = []
        self.path = self.log_dir / "history.csv"
        atomic_write_bytes(self.log_dir / "hparams.json",
                           (json.dumps(params, indent=2) + "\n").encode())

    def _log_metrics(self, record: dict[str, Any], step: int) -> None:
        self.records.append(record)
        cols = csv_columns(self.records)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for r in self.records:
            row = {k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                   for k, v in r.items() if k != "lr"}
            row.update({f"lr_{i}": repr(float(v)) for i, v in enumerate(r.get("lr") or ())})
            writer.writerow(row)
        atomic_write_bytes(self.path, buf.getvalue().encode())

    def _log_final(self, history: Any, report: Any, model_dir: Path | None) -> None:
        if report is not None:
            report.to_json(self.log_dir / "report.json")


class TensorBoardLogger(Logger):
    """``torch.utils.tensorboard`` event files in ``log_dir/tensorboard``."""

    name = "tensorboard"

    def _start(self, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir / "tensorboard"))
        table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("config", "| option | value |\n|---|---|\n" + table, 0)

    def _log_metrics(self, record: dict[str, Any], step: int) -> None:
        for key, value in record_metrics(record).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def _log_final(self, history: Any, report: Any, model_dir: Path | None) -> None:
        final = {f"final/{k}": float(v) for k, v in (report.metrics if report else {}).items()
                 if isinstance(v, (int, float)) and v == v}
        if not final and len(history):
            final = {f"final/{k}": v for k, v in record_metrics(history[-1]).items()}
        params = {k: ("None" if v is None else v) for k, v in self.params.items()}
        self.writer.add_hparams(params, final, run_name=".")

    def _close(self, failed: bool) -> None:
        self.writer.close()


class MLflowLogger(Logger):
    """One MLflow run: params, per-epoch metrics, the report and the model as artifacts.

    Args:
        log_dir: the default store is ``log_dir/mlruns`` (a local file store).
        tracking_uri: another store (``http://...``, ``sqlite:///mlflow.db``...).
        experiment: the experiment's name.
        run_name: the run's name (default: ``<backbone>-<strategy>``).
    """

    name = "mlflow"

    def __init__(self, log_dir: str | os.PathLike = DEFAULT_LOG_DIR, *,
                 tracking_uri: str | None = None, experiment: str = "transferkit",
                 run_name: str | None = None) -> None:
        super().__init__(log_dir)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.run_id: str | None = None

    @property
    def store_uri(self) -> str:
        return self.tracking_uri or (self.log_dir / "mlruns").absolute().as_uri()

    def _start(self, params: dict[str, Any]) -> None:
        if self.tracking_uri is None:  # the default local store: MLflow 3's opt-in for it
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.store_uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(self.experiment)
        name = self.run_name or f"{params.get('backbone')}-{params.get('strategy')}"
        self.run_id = self.client.create_run(exp_id, run_name=name).info.run_id
        self.client.log_batch(self.run_id, params=[
            Param(k, "None" if v is None else str(v)[:6000]) for k, v in params.items()])

    def _log_metrics(self, record: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, v, now, step) for k, v in record_metrics(record).items()])

    def _log_final(self, history: Any, report: Any, model_dir: Path | None) -> None:
        from mlflow.entities import Metric

        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "history.json").write_text(json.dumps(history.to_list(), indent=2))
            self.client.log_artifact(self.run_id, str(Path(tmp) / "history.json"))
            if report is not None:
                report.to_json(Path(tmp) / "report.json")
                self.client.log_artifact(self.run_id, str(Path(tmp) / "report.json"))
                now = int(time.time() * 1000)
                self.client.log_batch(self.run_id, metrics=[
                    Metric(f"final/{k}", float(v), now, len(history))
                    for k, v in report.metrics.items() if isinstance(v, (int, float)) and v == v])
        if model_dir is not None:
            self.client.log_artifacts(self.run_id, str(model_dir), artifact_path="model")

    def _close(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


LOGGERS: dict[str, type[Logger]] = {
    "csv": CSVLogger, "tensorboard": TensorBoardLogger, "mlflow": MLflowLogger}
_EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


def check_loggers(loggers: Any, log_dir: Any, tracking_uri: Any) -> tuple[Any, ...]:
    """Validate ``finetune``'s logging options (before any work); return the loggers tuple."""
    if isinstance(loggers, (str, Logger)):
        loggers = (loggers,)
    if not isinstance(loggers, (list, tuple)):
        raise TypeError(f"finetune: loggers must be a list of names {sorted(LOGGERS)} or Logger "
                        f"objects, got {type(loggers).__name__}.")
    import importlib.util

    for item in loggers:
        if isinstance(item, str):
            if item not in LOGGERS:
                raise ValueError(f"finetune: unknown logger {item!r}; expected one of "
                                 f"{sorted(LOGGERS)} or a Logger object.")
            module, extra = _EXTRAS.get(item, (None, None))
            if module and importlib.util.find_spec(module) is None:
                raise MissingDependencyError(
                    f"finetune: loggers=[{item!r}] needs {module}, which is not installed. "
                    f'Install it with pip install "transferkit[{extra}]".')
        elif not isinstance(item, Logger):
            raise TypeError(f"finetune: each logger must be one of {sorted(LOGGERS)} or a Logger "
                            f"object, got {type(item).__name__}. Pass other callbacks as "
                            "callbacks=[...].")
    if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(f"finetune: log_dir must be a folder path, got {type(log_dir).__name__}.")
    if log_dir is not None and not loggers:
        raise ValueError("finetune: log_dir is given but loggers is empty; name the loggers, "
                         "e.g. loggers=['csv', 'tensorboard'].")
    if tracking_uri is not None:
        if not isinstance(tracking_uri, str):
            raise TypeError(f"finetune: tracking_uri must be a str, got "
                            f"{type(tracking_uri).__name__}.")
        if not any(x == "mlflow" or isinstance(x, MLflowLogger) for x in loggers):
            raise ValueError("finetune: tracking_uri is for the MLflow logger; add "
                             "loggers=['mlflow'].")
    return tuple(loggers)


def make_loggers(loggers: Sequence[Any], log_dir: str | os.PathLike | None,
                 tracking_uri: str | None = None) -> list[Logger]:
    """Logger objects for validated names (objects pass through). Creates no files."""
    folder = DEFAULT_LOG_DIR if log_dir is None else log_dir
    out: list[Logger] = []
    for item in loggers:
        if isinstance(item, Logger):
            out.append(item)
        elif item == "mlflow":
            out.append(MLflowLogger(folder, tracking_uri=tracking_uri))
        else:
            out.append(LOGGERS[item](folder))
    return out
