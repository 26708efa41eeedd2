"""``History``: what happened in each epoch of ``finetune``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["History"]


class History:
    """Per-epoch records: epoch, phase, train loss/accuracy, validation metrics, learning rates
    per parameter group, seconds and images per second.

    Example:
        >>> h = History([{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": 0.5}])
        >>> h["train_loss"]
        [1.0, 0.5]
    """

    def __init__(self, records: list[dict[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = list(records or [])
        self.stopped_early = False
        self.best_epoch: int | None = None
        # channels_last="auto": each format choice of the run (mode, channels_last, how, the
        # timed seconds per format, the key, its cost); each record says the epoch's format.
        self.memory_format: list[dict[str, Any]] = []

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
