"""The library's logger: ``logging.getLogger("transferkit")``.

One-line notices (the feature cache turned off or on with augmentation) go through it at INFO
level. It comes with one handler that writes ``transferkit: <message>`` to the current
``sys.stderr``; ``logging.getLogger("transferkit").setLevel(logging.WARNING)`` silences the
notices, and removing that handler (``logger.handlers.clear()``, ``logger.propagate = True``)
hands them to the application's own logging configuration.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["logger", "notice"]

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
