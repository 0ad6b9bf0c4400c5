"""One poller for every task in flight.

Each cycle sends ONE list request (page 1, newest first) per kind that has tasks in flight,
and a GET only for tracked tasks missing from that page. Peers poll each task with its own
GET every few seconds; with many tasks that is what trips the rate limit (1302).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kling_tui.api.errors import KlingError
from kling_tui.api.types import Task

log = logging.getLogger(__name__)

NOT_FOUND_CODE = 1201
ERROR_GROWTH = 2.0


@dataclass(frozen=True)
class StatusChange:
    task: Task
    kind: str
    previous_status: str
    key: str | None = None  # what the tracker follows it by (task_id or external_task_id)


@dataclass
class _Tracked:
    kind: str
    status: str


Callback = Callable[[Any], Awaitable[object] | object]


class Tracker:
    """Tracks tasks by `task_id` (an `external_task_id` works too, e.g. after a crash)."""

    def __init__(
        self, client: Any, *, min_interval: float = 1.0, max_interval: float = 5.0, page_size: int = 500
    ) -> None:
        if not 0 < min_interval <= max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        self.client = client
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.page_size = page_size
        self.interval = min_interval
        self.errors: list[KlingError] = []  # per-task failures of the last cycle
        self._tracked: dict[str, _Tracked] = {}
        self._wake = asyncio.Event()
        self._poll_now = False

    @property
    def in_flight(self) -> int:
        return len(self._tracked)

    def is_tracked(self, task_id: str) -> bool:
        return task_id in self._tracked

    def track(self, task_id: str, kind: str = "generation", status: str = "submitted") -> None:
        self._tracked[task_id] = _Tracked(kind, status)
        self.interval = self.min_interval
        self._wake.set()  # lets an idle run() start counting its (shorter) interval

    def untrack(self, task_id: str) -> None:
        self._tracked.pop(task_id, None)

    def wake(self) -> None:
        """Poll at once instead of waiting out the interval."""
        self._poll_now = True
        self._wake.set()

    async def poll_once(self) -> list[StatusChange]:
        """One cycle. Raises when a list request fails (nothing is then changed); failures of
        single GETs are kept in `self.errors` and the other tasks are still reported."""
        self.errors = []
        changes: list[StatusChange] = []
        kinds = sorted({entry.kind for entry in self._tracked.values()})
        # Every list first: if one fails, no state has changed yet and nothing is lost.
        try:
            pages = {kind: await self.client.list(page=1, page_size=self.page_size, kind=kind) for kind in kinds}
        except Exception:
            self._adapt(failed=True)
            raise
        for kind, page in pages.items():
            seen: dict[str, Task] = {}
            for task in page:
                seen[task.task_id] = task
                if task.external_task_id:
                    seen.setdefault(task.external_task_id, task)
            for key, entry in list(self._tracked.items()):
                if entry.kind != kind:
                    continue
                task = seen.get(key)
                if task is None:
                    task = await self._fetch(key, kind)
                    if task is None:
                        continue
                change = self._update(key, entry, task)
                if change is not None:
                    changes.append(change)
        self._adapt(failed=bool(self.errors))
        return changes

    async def _fetch(self, key: str, kind: str) -> Task | None:
        try:
            return await self.client.get(key, kind)
        except KlingError as exc:
            self.errors.append(exc)
            if exc.code == NOT_FOUND_CODE:
                # The service does not know it (e.g. a create that never happened): stop asking.
                self.untrack(key)
            return None

    def _update(self, key: str, entry: _Tracked, task: Task) -> StatusChange | None:
        if key not in self._tracked:  # untracked while this cycle was waiting on the network
            return None
        previous = entry.status
        if task.is_final:
            self.untrack(key)
        else:
            entry.status = task.task_status
        if task.task_status == previous:
            return None
        return StatusChange(task=task, kind=entry.kind, previous_status=previous, key=key)

    def redeliver(self, change: StatusChange) -> None:
        """The change could not be handled (e.g. history could not be written): report it
        again on the next cycle, as if it had not been seen."""
        self._tracked[change.key or change.task.task_id] = _Tracked(change.kind, change.previous_status)
        self._wake.set()

    def _adapt(self, *, failed: bool) -> None:
        # Back off while the service fails (e.g. 1302 rate limits), brisk again once it answers.
        # A quiet cycle does not slow polling down: it costs one request whatever the number of
        # tasks, and a result should show within one interval of the service finishing it.
        if failed:
            self.interval = min(self.max_interval, self.interval * ERROR_GROWTH)
        else:
            self.interval = self.min_interval

    async def run(self, on_change: Callback, on_error: Callback | None = None) -> None:
        """Poll forever (cancel the task to stop); never dies on an API error."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await self._pause(loop, started)
            started = loop.time()  # cycles start an interval apart, however long one takes
            try:
                changes = await self.poll_once()
                errors: list[Exception] = list(self.errors)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything one cycle throws
                changes, errors = [], [exc]
            for change in changes:
                try:
                    await _call(on_change, change)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # e.g. a full disk: keep polling, try the change again
                    log.error("could not record %s (%s): %s", change.task.task_id, change.task.task_status, exc)
                    self.redeliver(change)
                    errors.append(exc)
            for error in errors:
                if on_error is None:
                    log.warning("polling failed: %s", error)
                    continue
                try:
                    await _call(on_error, error)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("the error handler failed")

    async def _pause(self, loop: asyncio.AbstractEventLoop, start: float) -> None:
        """Wait until `interval` after `start`; idle (no timer) while nothing is in flight."""
        while not self._poll_now:
            if not self._tracked:
                self._wake.clear()
                await self._wake.wait()
                start = loop.time()
                continue
            remaining = start + self.interval - loop.time()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancel that
                # lands as the event is set, and the poller would go on after its command ended.
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                break
        self._poll_now = False


async def _call(callback: Callback, value: Any) -> None:
    result = callback(value)
    if inspect.isawaitable(result):
        await result
