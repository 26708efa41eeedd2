"""``History``: what happened in each epoch of ``finetune``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["History"]


class History:
    """Per-epoch records: epoch, phase, train loss/accuracy, validation metrics, learning rates
    per parameter group, seconds and images per second; and what the run did at its end.

    Attributes:
        records: one dict per epoch (``History[i]`` / ``History["val_loss"]`` read them).
        stopped_early: early stopping ended the run.
        best_epoch: the epoch whose weights early stopping restored, else ``None``.
        memory_format: ``channels_last="auto"``: each format choice of the run (mode,
            channels_last, how, the timed seconds per format, the key, its cost); each record
            says the epoch's format.
        averaged: ``finetune(ema=...)`` / ``swa=...``: the weight average that became the final
            model: ``{"method": "ema" | "swa", "steps"`` (EMA updates) or ``"epochs"`` (SWA),
            plus its validation figures (``val_loss``, ``val_accuracy``, ...)``}``; else ``None``.
        wise: ``finetune(wise_alpha=...)``: ``{"alpha": the alpha of the final weights,
            "sweep": {alpha: validation figures}}`` (the sweep is empty for a fixed alpha);
            else ``None``.

    :meth:`to_dict` / :meth:`from_dict` write and read all of them as JSON-safe values.

    Example:
        >>> h = History([{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": 0.5}])
        >>> h["train_loss"]
        [1.0, 0.5]
        >>> History.from_dict(h.to_dict())["train_loss"], h.wise is None
        ([1.0, 0.5], True)
    """

    def __init__(self, records: list[dict[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = list(records or [])
        self.stopped_early: bool = False
        self.best_epoch: int | None = None
        self.memory_format: list[dict[str, Any]] = []
        self.averaged: dict[str, Any] | None = None
        self.wise: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The records and the run-level fields as JSON-safe values (``json.dumps`` works).

        The WiSE-FT sweep's alphas become string keys (``"0.5"``), as JSON requires;
        :meth:`from_dict` turns them back into floats.
        """
        wise = None if self.wise is None else {
            **self.wise, "sweep": {str(a): dict(m) for a, m in self.wise["sweep"].items()}}
        return {"records": self.to_list(), "stopped_early": self.stopped_early,
                "best_epoch": self.best_epoch,
                "memory_format": [dict(c) for c in self.memory_format],
                "averaged": None if self.averaged is None else dict(self.averaged),
                "wise": wise}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """The :class:`History` that :meth:`to_dict` wrote (after a JSON round trip too).

        Raises:
            TypeError: ``data`` is not a dict with a ``"records"`` list.
        """
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise TypeError(f"History.from_dict: expected the dict History.to_dict() writes "
                            f"(with a 'records' list), got {type(data).__name__}.")
        h = cls(data["records"])
        h.stopped_early = bool(data.get("stopped_early", False))
        h.best_epoch = data.get("best_epoch")
        h.memory_format = list(data.get("memory_format") or [])
        h.averaged = data.get("averaged")
        wise = data.get("wise")
        h.wise = None if wise is None else {
            **wise, "sweep": {float(a): m for a, m in wise.get("sweep", {}).items()}}
        return h

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self.records[key]
        return [r.get(key) for r in self.records]

    def to_list(self) -> list[dict[str, Any]]:
        """The records as a list of plain dicts (JSON-safe)."""
        return [dict(r) for r in self.records]

    def __repr__(self) -> str:
        if not self.records:
            return "History(empty)"
        cols = [c for c in ("epoch", "phase", "train_loss", "train_accuracy", "val_loss",
                            "val_accuracy", "seconds", "images_per_second")
                if any(c in r for r in self.records)]
        rows = [" ".join(f"{c:>14}" for c in cols)]
        for r in self.records:
            rows.append(" ".join(f"{_fmt(r.get(c)):>14}" for c in cols))
        return "History:\n" + "\n".join(rows)

    def plot(self, path: str | Path | None = None):
        """Learning curves (loss and accuracy per epoch); saved to ``path`` when given.

        Needs matplotlib (``pip install "transferkit[plot]"``). Returns the figure.
        """
        from ..errors import MissingDependencyError

        try:
            from matplotlib.figure import Figure

            if path is None:  # to show: pyplot's figure; to save: no pyplot, no global backend
                import matplotlib.pyplot as plt
        except ImportError:
            raise MissingDependencyError(
                'History.plot needs matplotlib. Install it with pip install "transferkit[plot]".'
            ) from None
        fig = plt.figure(figsize=(10, 4)) if path is None else Figure(figsize=(10, 4))
        axes = fig.subplots(1, 2)
        epochs = self["epoch"]
        for ax, metric in zip(axes, ("loss", "accuracy")):
            for split in ("train", "val"):
                values = self[f"{split}_{metric}"]
                if any(v is not None for v in values):
                    ax.plot(epochs, values, marker="o", label=split)
            ax.set_xlabel("epoch")
            ax.set_title(metric)
            ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)
