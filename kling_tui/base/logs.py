"""The log file: warnings and recoveries, for looking back after something went wrong."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler

LOG_BYTES = 1_000_000
LOG_FILES = 3


def setup_logging(level: int = logging.INFO) -> None:
    """Send kling_tui's own log records to locations.log_file(); never to the terminal."""
    from kling_tui.base.locations import log_file

    logger = logging.getLogger("kling_tui")
    if any(isinstance(h, RotatingFileHandler) for h in logger.handlers):
        return
    try:
        handler = RotatingFileHandler(log_file(), maxBytes=LOG_BYTES, backupCount=LOG_FILES, encoding="utf-8")
    except OSError:
        return  # a read-only home must not stop the app
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
