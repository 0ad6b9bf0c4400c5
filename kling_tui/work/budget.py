"""The local slot budget: how many of the pack's concurrency slots we may use right now.

A task holds `n` slots on the server from submit until it ends. Tasks that do not fit wait
locally. A 1303 from the server (the task was not created, so re-sending is safe) means the
server counts more in use than we know of — other clients on the same account, say — so the
budget drops to what evidently fits and then recovers one slot at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_CONCURRENCY = 9
RECOVER_SECONDS = 20.0


class SlotBudget:
    def __init__(
        self,
        concurrency: int = DEFAULT_CONCURRENCY,
        *,
        recover_seconds: float = RECOVER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = max(1, int(concurrency))
        self.recover_seconds = recover_seconds
        self.clock = clock
        self._budget = self.limit
        self._since = clock()

    @property
    def budget(self) -> int:
        """The slots we may use now, after any recovery since the last 1303."""
        if self._budget < self.limit:
            steps = int((self.clock() - self._since) / self.recover_seconds)
            if steps:
                self._budget = min(self.limit, self._budget + steps)
                self._since += steps * self.recover_seconds
        return self._budget

    def busy(self, in_use: int) -> None:
        """The server said 1303 while we held `in_use` slots."""
        self._budget = max(1, min(self.budget - 1, in_use))
        self._since = self.clock()

    def fits(self, n: int, in_use: int) -> bool:
        return in_use + n <= self.budget

    def never_fits(self, n: int) -> bool:
        """A task larger than the whole pack would be refused forever."""
        return n > self.limit
