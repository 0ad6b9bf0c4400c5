"""Where kling-tui keeps its files. `KLING_TUI_HOME` puts everything under one folder."""

from __future__ import annotations

import errno
import os
from pathlib import Path

APP_NAME = "kling-tui"

_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, errno.EDQUOT)
# Below this, SQLite cannot even open its write-ahead log: the disk counts as full.
_NEARLY_FULL_BYTES = 256 * 1024


class StorageError(OSError):
    """A folder or file kling-tui needs cannot be made or written. The message says what,
    where, and what to do; `bad_input` when a setting is wrong (a file where a folder must
    be), as opposed to a disk that is read-only or full."""

    def __init__(self, message: str, path: Path, *, bad_input: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.bad_input = bad_input
        self.code = code

    def __str__(self) -> str:
        return self.message


def storage_error(action: str, path: Path, cause: BaseException | None = None) -> StorageError:
    """A StorageError for failing to `action` (e.g. "write the history") at `path`.

    The reason comes from the error's errno; without one (SQLite's errors carry none) the
    file system is asked whether it is read-only or full.
    """
    if isinstance(cause, StorageError):
        return cause
    code = getattr(cause, "errno", None)
    blocker = _file_in_the_way(path)
    if code in _NOT_A_FOLDER or blocker is not None:
        where = blocker or path
        return StorageError(
            f"cannot {action} {path}: {where} is a file, not a folder. Move that file away, "
            "or set KLING_TUI_HOME to a folder kling-tui may use.",
            path,
            bad_input=True,
            code=code,
        )
    if code is None or code not in (*_NOT_WRITABLE, *_FULL):
        code = _diagnose(path) or code
    if code in (*_NOT_WRITABLE, *_FULL):
        reason = os.strerror(code)  # the words the OS uses, also when SQLite had none
    else:
        detail = getattr(cause, "strerror", None) or (str(cause) if cause else "")
        reason = detail or "it cannot be written"
    if code in _FULL:
        advice = "Free some space on that disk, then run the command again."
    else:
        advice = "Make it writable, or set KLING_TUI_HOME to a folder you can write to."
    return StorageError(f"cannot {action} {path}: {reason}. {advice}", path, code=code)


def is_storage_problem(exc: OSError) -> bool:
    """Whether an OSError means a disk that refuses (read-only, full) or a file in a folder's place."""
    return isinstance(exc, StorageError) or exc.errno in (*_NOT_A_FOLDER, *_NOT_WRITABLE, *_FULL)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """The file (not folder) standing where `path` or one of its folders should be."""
    found = _existing_ancestor(path)
    if found != path and not found.is_dir():
        return found
    return None


def _diagnose(path: Path) -> int | None:
    """Why a folder cannot be written, from the file system itself."""
    found = _existing_ancestor(path)
    folder = found if found.is_dir() else found.parent
    try:
        info = os.statvfs(folder)
    except OSError:
        return None
    if info.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if info.f_bavail * info.f_frsize < _NEARLY_FULL_BYTES:
        return errno.ENOSPC
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return None


def _home() -> Path | None:
    value = os.environ.get("KLING_TUI_HOME")
    return Path(value).expanduser() if value else None


def _ensure(path: Path, what: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(f"create the {what}", path, exc) from None
    return path


def config_dir() -> Path:
    home = _home()
    if home is not None:
        return _ensure(home / "config", "config folder")
    from platformdirs import user_config_path

    return _ensure(user_config_path(APP_NAME, appauthor=False), "config folder")


def data_dir() -> Path:
    home = _home()
    if home is not None:
        return _ensure(home / "data", "data folder")
    from platformdirs import user_data_path

    return _ensure(user_data_path(APP_NAME, appauthor=False), "data folder")


def cache_dir() -> Path:
    home = _home()
    if home is not None:
        return _ensure(home / "cache", "cache folder")
    from platformdirs import user_cache_path

    return _ensure(user_cache_path(APP_NAME, appauthor=False), "cache folder")


def config_file() -> Path:
    return config_dir() / "config.toml"


def history_dir(sandbox: bool = False) -> Path:
    """One folder per task: its TOML record and its images.

    The sandbox's tasks are kept apart: a session on the sandbox must never look up, send or
    settle the real service's tasks, nor show its made-up results among them.
    """
    return _ensure((data_dir() / "sandbox" if sandbox else data_dir()) / "tasks", "history folder")


def downloads_dir() -> Path:
    return _ensure(data_dir() / "downloads", "downloads folder")


def log_file() -> Path:
    return _ensure(data_dir() / "logs", "log folder") / "kling-tui.log"


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
