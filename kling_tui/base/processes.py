"""Which process wrote something, and whether that process still runs.

Several kling-tui processes may share one history (two TUIs, a TUI and CLI commands). A
record or temp file carries its writer's token; another process leaves it alone while that
writer lives. A pid alone is not proof (pids are reused), so the token also holds the
process's start time and the boot it started in, where the system tells them (Linux /proc).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

_PROC = Path("/proc")


def _boot_id() -> str:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """The process's start time since boot (clock ticks); None when it does not run.

    "" where the system does not tell (no /proc): then the pid alone decides.
    """
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return None if _PROC.joinpath("self").exists() else ""
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20:
        return ""
    if fields[0] in ("Z", "X"):  # a zombie has ended; only its exit status is left
        return None
    return fields[19]


@functools.cache
def _this_boot() -> str:
    return _boot_id()


def this_process(role: str = "app") -> str:
    """`role:pid:start:boot` for the running process (`role` says what kind: app, cli)."""
    pid = os.getpid()
    return f"{role}:{pid}:{_start_ticks(pid) or ''}:{_this_boot()}"


def role_of(token: str | None) -> str:
    return (token or "").split(":", 1)[0]


def pid_of(token: str | None) -> int | None:
    parts = (token or "").split(":")
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def is_this_process(token: str | None) -> bool:
    parts = (token or "").split(":")
    return len(parts) == 4 and parts[1:] == this_process().split(":")[1:]


def is_alive(token: str | None) -> bool:
    """Whether the process that made `token` may still run. False only when it provably ended."""
    parts = (token or "").split(":")
    if len(parts) != 4 or not parts[1].isdigit():
        return False
    _, pid_text, start, boot = parts
    if boot and _this_boot() and boot != _this_boot():
        return False  # the machine restarted since
    return pid_alive(int(pid_text), start)


def pid_alive(pid: int, start: str = "") -> bool:
    """Whether `pid` runs (and, given its start time, is still the same process)."""
    if pid <= 0:
        return False
    now = _start_ticks(pid)
    if now is None:
        return False
    if now and start:
        return now == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
