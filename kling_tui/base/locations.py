"""Where kling-tui keeps its files. `KLING_TUI_HOME` puts everything under one folder."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "kling-tui"


def _home() -> Path | None:
    value = os.environ.get("KLING_TUI_HOME")
    return Path(value).expanduser() if value else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    home = _home()
    if home is not None:
        return _ensure(home / "config")
    from platformdirs import user_config_path

    return _ensure(user_config_path(APP_NAME, appauthor=False))


def data_dir() -> Path:
    home = _home()
    if home is not None:
        return _ensure(home / "data")
    from platformdirs import user_data_path

    return _ensure(user_data_path(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    home = _home()
    if home is not None:
        return _ensure(home / "cache")
    from platformdirs import user_cache_path

    return _ensure(user_cache_path(APP_NAME, appauthor=False))


def config_file() -> Path:
    return config_dir() / "config.toml"


def history_dir(sandbox: bool = False) -> Path:
    """One folder per task: its TOML record and its images.

    The sandbox's tasks are kept apart: a session on the sandbox must never look up, send or
    settle the real service's tasks, nor show its made-up results among them.
    """
    return _ensure((data_dir() / "sandbox" if sandbox else data_dir()) / "tasks")


def downloads_dir() -> Path:
    return _ensure(data_dir() / "downloads")


def log_file() -> Path:
    return _ensure(data_dir() / "logs") / "kling-tui.log"


def all_paths() -> dict[str, Path]:
    return {
        "config file": config_file(),
        "config dir": config_dir(),
        "data dir": data_dir(),
        "history": history_dir(),
        "sandbox history": history_dir(sandbox=True),
        "downloads": downloads_dir(),
        "cache": cache_dir(),
        "log": log_file(),
    }
