"""Shared pieces: the result row, the sandbox process, frame timing, percentiles."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".cache"
API_KEY = "sandbox-api-key"  # the sandbox's published demo key, not a secret
SIZE = (120, 36)


@dataclass
class Row:
    """One line of the table: a figure, the figure it is compared with, and the goal."""

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    goal: str
    ok: bool | None  # None: informative, no goal of its own

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else math.inf

    @property
    def ratio_goal(self) -> bool:
        """A goal that decides: a ratio to a baseline of the same run ("<= 1.5x"), which a noisy
        machine moves on both sides, or a count ("<= 1 req"). Goals in absolute time ("<= 50 ms")
        are shown as information: a busy machine moves them alone."""
        return self.ok is not None and not self.goal.rstrip().endswith(("ms", " s"))

    @property
    def result(self) -> str:
        if self.ok is None:
            return "-"
        if self.ratio_goal:
            return "PASS" if self.ok else "FAIL"
        return "(ok)" if self.ok else "(over)"


def load_average() -> str:
    """The machine's 1/5/15-minute load, printed with the results: figures from a busy machine read differently."""
    try:
        return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load unknown"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def child_env(home: Path, base_url: str | None = None) -> dict[str, str]:
    """The environment a user would set: own data folder, the sandbox's URL and key."""
    env = dict(os.environ)
    env["KLING_TUI_HOME"] = str(home)
    for name in ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_KEY", "KLING_BASE_URL"):
        env.pop(name, None)
    if base_url:
        env["KLING_BASE_URL"] = base_url
        env["KLING_API_KEY"] = API_KEY
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    # As installed: `pip install` leaves every package compiled to bytecode (Textual's too).
    # Without it, each start would compile kling-tui's own modules again (~35 ms).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@contextmanager
def sandbox_process(submitted: float, processing: float) -> Iterator[str]:
    """Start the sandbox in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sandbox_server", str(submitted), str(processing)],
        cwd=REPO,
        env=child_env(CACHE / "sandbox-home"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the sandbox process did not start")
        yield url
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sandbox_counters(base_url: str) -> dict[str, int]:
    import httpx

    return httpx.get(f"{base_url}/_sandbox/counters", timeout=10).json()


class FrameProbe:
    """Notes when each frame reaches the terminal.

    Textual hands every screen update to `App._display`. A headless app skips turning it
    into escape codes; the probe does that work too (and throws the text away), so a frame
    costs what it costs on a real terminal, bar the write itself.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.frames = 0
        self.last: float = 0.0
        self.wall_offset = time.time() - time.perf_counter()  # perf_counter() + this = Unix time
        self.listeners: list[Callable[[float], None]] = []  # called with each frame's perf_counter()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[float]]] = []
        self._display = app._display
        app._display = self._on_display

    def _on_display(self, screen: Any, renderable: Any) -> None:
        self._display(screen, renderable)
        if renderable is None:
            return
        from textual._compositor import CompositorUpdate

        if isinstance(renderable, CompositorUpdate):
            renderable.render_segments(self.app.console)
        now = time.perf_counter()
        self.frames += 1
        self.last = now
        for listener in self.listeners:
            listener(now)
        for waiter in list(self._waiters):
            condition, future = waiter
            if not future.done() and condition():
                future.set_result(now)
                self._waiters.remove(waiter)

    async def frame_where(self, condition: Callable[[], bool], timeout: float = 10.0) -> float:
        """perf_counter() of the first frame painted from now on while `condition()` holds."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        entry = (condition, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
