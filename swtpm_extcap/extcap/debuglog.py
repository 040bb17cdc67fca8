"""``--log-file``: the capture's debug messages, never on stderr (Wireshark's error dialog).

A full disk silences the log instead of flooding stderr with Python's
"--- Logging error ---" or failing a capture: the log is only a debug aid.
"""

from __future__ import annotations

import logging

from ..errors import LOGGER, UsageError, reason
from .options import LOG_LEVELS


class QuietFileHandler(logging.FileHandler):
    """A file handler that goes quiet at its first write error."""

    broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.broken = True  # stop writing; the capture goes on

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            self.broken = True

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            pass


def open_debug_log(level: str, path: str) -> logging.Handler | None:
    """Send the package's messages at ``level`` to ``path`` (none: nowhere)."""
    logger = logging.getLogger(LOGGER)
    if not logger.handlers:  # no "last resort" output on stderr without a log file
        logger.addHandler(logging.NullHandler())
    if not path:
        return None
    try:
        handler = QuietFileHandler(path, mode="w", encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        raise UsageError(f"cannot write the log file {path}: {reason(exc)}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(LOG_LEVELS.get(level, 25))
    return handler


def close_debug_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger(LOGGER).removeHandler(handler)
        handler.close()
