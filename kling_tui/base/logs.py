"""The log file: warnings and recoveries, for looking back after something went wrong."""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path

from kling_tui.base.textsafe import plain

LOG_BYTES = 1_000_000
LOG_FILES = 3
LOG_MODE = 0o600  # prompts and server messages: for the owner's eyes only


class SafeFormatter(logging.Formatter):
    """Escapes control characters in every message, so server text can neither run escape
    sequences under `tail -f` nor forge a line of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return plain(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return plain(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return plain(super().formatStack(stack_info), keep_newlines=True)


class PrivateLogHandler(RotatingFileHandler):
    """A rotating log whose files (the current one and each new one after a rotation) are 0600."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        # A full or read-only disk loses the line; it must not spill a traceback on the terminal.
        pass


def make_private(path: Path) -> None:
    """Files written by an older version were 0644: narrow them on start."""
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, LOG_MODE)
    except OSError:
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Send kling_tui's own log records to locations.log_file(); never to the terminal."""
    from kling_tui.base.locations import log_file

    logger = logging.getLogger("kling_tui")
    if any(isinstance(h, RotatingFileHandler) for h in logger.handlers):
        return
    try:
        path = log_file()
        for old in (path, *(path.with_name(f"{path.name}.{i}") for i in range(1, LOG_FILES + 1))):
            make_private(old)
        handler = PrivateLogHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_FILES, encoding="utf-8")
    except OSError:
        return  # a read-only home must not stop the app
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
