"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from kling_tui.base.processes import pid_alive

# A temp file this old is abandoned whoever wrote it: a write takes milliseconds.
TEMP_STALE_SECONDS = 3600.0
# Younger than this, a temp file is left alone even when its writer looks gone.
TEMP_GRACE_SECONDS = 60.0
_TEMP_NAME = re.compile(r"\.(?:p(?P<pid>[0-9]+)-)?[0-9a-f]{8}\.tmp\Z")


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`.

    The temp file is created with `mode` from the start (never wider, even for a moment).
    `durable=False` skips fsync: for bulk fixtures, where a lost write costs nothing.
    """
    # The writer's pid is in the name, so another process's sweep can tell it is still in use.
    tmp = path.with_name(f"{path.name}.p{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def move_aside(path: Path, label: str = "damaged") -> Path:
    """Rename `path` to `<name>.<label>-<UTC time>` (never over an earlier one) and return it."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.{label}-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.{label}-{stamp}-{counter}")
    os.replace(path, target)
    return target


def temp_files(path: Path) -> list[Path]:
    """The temp files `write_atomic` leaves beside `path` when a writer dies mid-write."""
    return [p for p in path.parent.glob(f"{path.name}.*.tmp") if _TEMP_NAME.search(p.name[len(path.name) :])]


def is_abandoned(temp: Path, now: float | None = None) -> bool:
    """Whether a temp file of `write_atomic` is provably left behind: its writer no longer runs
    (and it is not brand new), or it is far older than any write takes."""
    try:
        age = (time.time() if now is None else now) - temp.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > TEMP_STALE_SECONDS:
        return True
    if age < TEMP_GRACE_SECONDS:
        return False
    match = _TEMP_NAME.search(temp.name)
    pid = match.group("pid") if match else None
    # A name without a pid comes from an older version: only its age can tell.
    return pid is not None and not pid_alive(int(pid))


@contextlib.contextmanager
def exclusive(path: Path, *, mode: int = 0o600) -> Iterator[None]:
    """Take turns with other processes (flock) on `path`: a lock file, created if missing, or a
    directory. Where there is no flock, no turn is taken."""
    try:
        import fcntl
    except ImportError:  # not on POSIX
        yield
        return
    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
