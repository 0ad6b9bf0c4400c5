"""The sandbox clock: wall time plus an offset that tests move forward."""

from __future__ import annotations

import threading
import time


class SandboxClock:
    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Unix seconds on the sandbox clock (monotonic underneath: never jumps back)."""
        with self._lock:
            offset = self._offset
        return self._wall0 + (time.monotonic() - self._mono0) + offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds
