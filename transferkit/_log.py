"""The library's logger: ``logging.getLogger("transferkit")``.

One-line notices (the feature cache turned off or on with augmentation) go through it at INFO
level. Progress bars go through :func:`progress_bar`, the one place tqdm is called. It comes with one handler that writes ``transferkit: <message>`` to the current
``sys.stderr``; ``logging.getLogger("transferkit").setLevel(logging.WARNING)`` silences the
notices, and removing that handler (``logger.handlers.clear()``, ``logger.propagate = True``)
hands them to the application's own logging configuration.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["logger", "notice", "progress_bar"]

logger = logging.getLogger("transferkit")


class _CurrentStderr(logging.StreamHandler):
    """A stream handler bound to whatever ``sys.stderr`` is when a record is written."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401 - logging reads the attribute
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


if not logger.handlers:
    _handler = _CurrentStderr()
    _handler.setFormatter(logging.Formatter("transferkit: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def notice(message: str) -> None:
    """A one-line notice to the user (INFO on the ``transferkit`` logger)."""
    logger.info(message)


def progress_bar(iterable: Any = None, *, total: int | None = None, desc: str | None = None,
                 unit: str = "img", enabled: bool = True) -> Any:
    """The one progress bar of every path (training epochs, feature caches, decoding,
    evaluation): ``tqdm.auto``, cleared when done (``leave=False``), as wide as the terminal.

    Args:
        iterable: what to wrap (or ``None``: call ``bar.update(n)`` yourself).
        total, desc, unit: as in tqdm.
        enabled: the verb's ``progress`` option; ``False`` draws nothing. When ``True`` the
            bar is still off where stderr is not a terminal (logs, pipes, CI: tqdm's
            ``disable=None``); a notebook shows its widget.

    Returns:
        A tqdm bar (a context manager and an iterable; ``update`` works when disabled too).

    Example:
        >>> with progress_bar(total=3, desc="demo", enabled=False) as bar:
        ...     bar.update(3)
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                disable=None if enabled else True)
