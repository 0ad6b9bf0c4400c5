"""Submitting, following and saving tasks: the loop the TUI and the CLI share.

The workbench ties the client, the tracker and the history store together, and tells its
listeners about every record it changes. History is written before each create is sent
(write-ahead), so a task the server may have created is never missing from it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kling_tui.api.capabilities import Capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import InvalidRequest, KlingError, NetworkError
from kling_tui.api.types import Request, Task, request_from_params
from kling_tui.history.metadata import keep_parameters
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.budget import SlotBudget
from kling_tui.work.tracker import StatusChange, Tracker

log = logging.getLogger(__name__)

Listener = Callable[[TaskRecord], object]

ACTIVE_ON_SERVER = ("submitted", "processing")
TASK_NOT_FOUND = 1201
BUSY = 1303
WAITING = ("queued", "pending")  # not yet answered by the server
BUSY_RETRY_SECONDS = 1.0
CONFIRM_EVERY = (
    5  # recovery ticks between lookups of unanswered creates  # kling-protocol.md: wait at least a second after 1303
)
UNSAVED_SCAN = 200  # recent successes checked on start for images not yet saved
URL_LIFETIME = 30 * 86400  # Kling deletes result images 30 days after the task


def _image_suffix(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    for suffix in (".png", ".jpg", ".jpeg", ".webp"):
        if path.endswith(suffix):
            return suffix
    return ".png"


def _slots_label(record: TaskRecord) -> str:
    series = record.params.get("result_type") == "series"
    return f"series_amount={record.slots}" if series else f"n={record.slots}"


class Workbench:
    def __init__(
        self,
        client: KlingClient,
        store: HistoryStore,
        caps: Capabilities,
        *,
        tracker: Tracker | None = None,
        auto_download: bool = True,
        budget: SlotBudget | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.caps = caps
        self.tracker = tracker or Tracker(client)
        self.auto_download = auto_download
        self.budget = budget or SlotBudget()
        # Local ids of queued tasks, in the order they will be sent.
        self.queue: list[str] = []
        self._requests: dict[str, Request] = {}
        self._background: set[asyncio.Task] = set()
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._in_flight: set[str] = set()  # local ids whose create request is being sent
        # 1303 goes back to the local queue instead of being retried inside the client.
        client.retry_busy_creates = False
        self._listeners: list[Listener] = []
        # Records whose n counts against the server's concurrency slots, by local id.
        self._running: dict[str, TaskRecord] = {}
        self._saving: dict[str, asyncio.Lock] = {}  # one per task whose images were saved

    # -- listeners ---------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _changed(self, record: TaskRecord) -> TaskRecord:
        if record.status_msg and record.status in ("pending", "not_created", "failed"):
            log.info("%s %s: %s", record.local_id, record.status, record.status_msg)
        if record.status in ACTIVE_ON_SERVER or record.status == "pending":
            # Slots are held from the create request on (pending) until the task ends.
            self._running[record.local_id] = record
        else:
            self._running.pop(record.local_id, None)
        for listener in self._listeners:
            listener(record)
        if record.status not in WAITING:
            for waiter in self._waiters.pop(record.local_id, []):
                if not waiter.done():
                    waiter.set_result(record)
        return record

    def _update(self, local_id: str, **changes) -> TaskRecord:
        return self._changed(self.store.update(local_id, **changes))

    @property
    def slots_in_use(self) -> int:
        return sum(r.slots for r in self._running.values())

    # -- submitting --------------------------------------------------------------------
    def check(self, request: Request) -> None:
        """Raise InvalidRequest when the request breaks a rule; nothing is recorded or sent."""
        request.build(self.caps)

    def record(self, request: Request, status: str = "pending", group: str | None = None) -> TaskRecord:
        """Write the request to history before anything is sent (write-ahead)."""
        self.check(request)
        record = self.store.new_record(
            request.kind, request.params(), external_task_id=request.external_task_id, parents=request.parents
        )
        request.external_task_id = record.external_task_id
        changes = {}
        if status != "pending":
            changes["status"] = status
        if group:
            changes["group"] = group
        if changes:
            record = self.store.update(record.local_id, **changes)
        return self._changed(record)

    # -- the local queue ----------------------------------------------------------------
    def enqueue(self, request: Request, group: str | None = None) -> TaskRecord:
        """Record the task as queued and send it as soon as its `n` slots fit the budget."""
        last = max((getattr(self.store.get(i), "queue_position", None) or 0.0 for i in self.queue[-1:]), default=0.0)
        record = self.record(request, status="queued", group=group)
        record = self.store.update(record.local_id, queue_position=max(time.time(), last + 1e-3))
        self.queue.append(record.local_id)
        self._requests[record.local_id] = request
        self.pump()
        return record

    @property
    def sending(self) -> int:
        """Creates sent whose answer has not arrived yet."""
        return sum(1 for r in self._running.values() if r.status == "pending")

    def pump(self) -> None:
        """Send queued tasks, oldest first, while they fit in the slot budget."""
        while self.queue:
            record = self.store.get(self.queue[0])
            if record is None or record.status != "queued":
                self.queue.pop(0)
                continue
            if self.budget.never_fits(record.slots):
                self.queue.pop(0)
                self._update(
                    record.local_id,
                    status="not_created",
                    status_msg=f"{_slots_label(record)} needs more slots than the pack's concurrency "
                    f"({self.budget.limit})",
                )
                continue
            if not self.budget.fits(record.slots, self.slots_in_use):
                return
            self.queue.pop(0)
            request = self._requests.pop(record.local_id, None) or self._rebuild(record)
            # In flight from here on: nothing may look it up (and find nothing) meanwhile.
            self._in_flight.add(record.local_id)
            record = self._update(record.local_id, status="pending", status_msg="")
            self._spawn(self._send_queued(record, request))

    def _rebuild(self, record: TaskRecord) -> Request:
        request = request_from_params(record.kind, record.params)
        request.external_task_id = record.external_task_id
        return request

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_queued(self, record: TaskRecord, request: Request) -> None:
        in_use = self.slots_in_use
        self._in_flight.add(record.local_id)
        try:
            record = await self.send(record, request)
        except Exception as exc:  # never lose the record: it stays pending and is looked up later
            record = self._update(record.local_id, status_msg=f"not confirmed yet: {exc}")
        finally:
            self._in_flight.discard(record.local_id)
        if record.status == "not_created" and record.error_code == BUSY:
            # Not created, so safe to send again: back to the head of the queue.
            self.budget.busy(max(0, in_use - record.slots))
            self._update(record.local_id, status="queued", status_msg="waiting: the server's slots are full (1303)")
            self.queue.insert(0, record.local_id)
            self._requests[record.local_id] = request
            asyncio.get_running_loop().call_later(BUSY_RETRY_SECONDS, self.pump)
            return
        # Also answers a submit() whose create is still unconfirmed (pending).
        for waiter in self._waiters.pop(record.local_id, []):
            if not waiter.done():
                waiter.set_result(record)
        self.pump()

    def annotate(self, local_id: str, **changes) -> TaskRecord:
        """Change what the user owns on a record: star, note."""
        return self._update(local_id, **changes)

    async def confirm_unanswered(self) -> None:
        """Look up pending creates whose sending has ended without a clear answer."""
        for record in list(self._running.values()):
            if record.status == "pending" and record.local_id not in self._in_flight:
                await self.confirm(record)

    async def aclose(self) -> None:
        """Stop background sends (their records stay pending and are looked up on next start)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def cancel(self, local_id: str) -> TaskRecord | None:
        """Drop a queued task before it is sent; it stays in history as not created."""
        if local_id not in self.queue:
            return None
        self.queue.remove(local_id)
        self._requests.pop(local_id, None)
        return self._update(local_id, status="not_created", status_msg="cancelled before it was sent")

    def move(self, local_id: str, delta: int) -> bool:
        """Move a queued task `delta` places toward the front (negative) or back."""
        if local_id not in self.queue:
            return False
        old = self.queue.index(local_id)
        new = max(0, min(len(self.queue) - 1, old + delta))
        if new == old:
            return False
        self.queue.insert(new, self.queue.pop(old))
        for position, queued in enumerate(self.queue):
            self.store.update(queued, queue_position=float(position))
        moved = self.store.get(local_id)
        if moved is not None:
            self._changed(moved)
        return True

    async def submit(self, request: Request, group: str | None = None) -> TaskRecord:
        """Queue, and wait for the create's answer; returns the record in its state after it."""
        queued = self.enqueue(request, group=group)
        # enqueue() may already have settled it (e.g. more slots than the pack has).
        record = self.store.get(queued.local_id) or queued
        if record.status in WAITING:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(record.local_id, []).append(waiter)
            record = await waiter
        return record

    async def send(self, record: TaskRecord, request: Request) -> TaskRecord:
        """Send the create of an already recorded task."""
        request.external_task_id = record.external_task_id
        if record.status != "pending":
            record = self._update(record.local_id, status="pending", status_msg="")
        try:
            task = await self.client.create(request)
        except InvalidRequest as exc:
            return self._update(record.local_id, status="not_created", status_msg=str(exc), error_code=1201)
        except NetworkError as exc:
            if exc.maybe_sent:
                # The server may hold the task: keep it pending and look it up later.
                return self._update(record.local_id, status_msg=f"not confirmed yet: {exc}")
            return self._update(record.local_id, status="not_created", status_msg=str(exc))
        except KlingError as exc:
            if (exc.http_status or 0) >= 500:
                # A server error, possibly from the lookup after an unclear create: the task
                # may exist. Keep it pending; confirm() settles it by its external_task_id.
                return self._update(record.local_id, status_msg=f"not confirmed yet: {exc}", error_code=exc.code)
            return self._update(record.local_id, status="not_created", status_msg=str(exc), error_code=exc.code)
        return self._adopt(record, task)

    def _adopt(self, record: TaskRecord, task: Task) -> TaskRecord:
        now = time.time()
        record = self._update(
            record.local_id,
            task_id=task.task_id,
            status=task.task_status,
            status_msg=task.task_status_msg,
            submitted_at=record.submitted_at or now,
            updated_at=now,
            error_code=None,
        )
        if task.is_final:
            return self._finish(record, task)
        self.tracker.track(task.task_id, record.kind, task.task_status)
        self.tracker.wake()
        return record

    # -- following ---------------------------------------------------------------------
    async def reconcile(self) -> list[TaskRecord]:
        """On start: follow tasks still running, and look up creates never confirmed."""
        changed = []
        queued = []
        for record in self.store.active():
            if record.status == "queued":
                queued.append(record)
                continue
            if record.task_id:
                self._changed(record)
                self.tracker.track(record.task_id, record.kind, record.status)
                continue
            changed.append(await self.confirm(record))
        queued.sort(key=lambda r: (r.queue_position or 0.0, r.created_at))
        for record in queued:
            if record.local_id not in self.queue:
                self.queue.append(record.local_id)
            self._changed(record)
        self.pump()
        await self.save_missing_images()
        return changed

    async def save_missing_images(self, limit: int = UNSAVED_SCAN) -> None:
        """Finish downloads cut short by a quit: recent successes whose images are not all saved."""
        for row in self.store.recent(limit, status="succeed"):
            record = self.store.get(row.local_id)
            if record is None or record.finished_at is None or time.time() - record.finished_at > URL_LIFETIME:
                continue
            folder = self.store.task_dir(record.local_id)
            saved = sum(1 for p in record.image_paths if (folder / p).exists())
            if saved < len(record.image_urls) and self.auto_download:
                await self.save_images(record)

    async def confirm(self, record: TaskRecord) -> TaskRecord:
        """Settle a pending record by looking its external_task_id up on the server."""
        try:
            task = await self.client.get(record.external_task_id, kind=record.kind)
        except KlingError as exc:
            latest = self.store.get(record.local_id) or record
            if latest.task_id or latest.status != "pending" or latest.local_id in self._in_flight:
                # Answered meanwhile (its create, still on its way when we asked, arrived):
                # "not found" was about the moment before, never a reason to call it not created.
                return latest
            if exc.code == TASK_NOT_FOUND:
                return self._update(
                    record.local_id,
                    status="not_created",
                    status_msg="not created: the server has no task with this external_task_id",
                    error_code=exc.code,
                )
            return self._update(record.local_id, status_msg=f"not confirmed yet: {exc}")
        return self._adopt(record, task)

    def apply(self, change: StatusChange) -> TaskRecord | None:
        """Record a status change the tracker reported."""
        record = self._write_change(change)
        return self._announce_change(record)

    async def apply_in_thread(self, change: StatusChange) -> TaskRecord | None:
        """`apply`, with the file and index writes (an fsync each) off the event loop."""
        record = await asyncio.to_thread(self._write_change, change)
        return self._announce_change(record)

    def _write_change(self, change: StatusChange) -> TaskRecord | None:
        # Store only: safe on a worker thread (the store serialises its own writes).
        record = self.store.find_by_task_id(change.task.task_id)
        if record is None:
            return None
        task = change.task
        changes = dict(status=task.task_status, status_msg=task.task_status_msg, updated_at=time.time())
        if task.is_final:
            changes.update(self._final_changes(task))
        return self.store.update(record.local_id, **changes)

    def _announce_change(self, record: TaskRecord | None) -> TaskRecord | None:
        if record is None:
            return None
        self._changed(record)
        if record.is_final:
            self.pump()
        return record

    def _finish(self, record: TaskRecord, task: Task) -> TaskRecord:
        return self._update(record.local_id, **self._final_changes(task))

    @staticmethod
    def _final_changes(task: Task) -> dict:
        return dict(
            finished_at=time.time(),
            units=task.final_unit_deduction,
            image_urls=[img.url for img in sorted(task.images, key=lambda i: i.index)],
        )

    async def follow(self, on_error: Callable[[Exception], object] | None = None) -> None:
        """Poll forever; each change is recorded and its images saved."""

        async def on_change(change: StatusChange) -> None:
            record = await self.apply_in_thread(change)
            if record is not None and record.status == "succeed" and self.auto_download:
                # In the background: the next poll cycle must not wait for the downloads.
                self._spawn(self.save_images(record, on_error=on_error))

        async def recover() -> None:
            # The budget recovers with time: give waiting tasks a chance now and then, and
            # settle creates that got no clear answer instead of letting them hold slots.
            ticks = 0
            while True:
                await asyncio.sleep(BUSY_RETRY_SECONDS)
                ticks += 1
                if self.queue:
                    self.pump()
                if ticks % CONFIRM_EVERY == 0:
                    await self.confirm_unanswered()

        recovering = asyncio.get_running_loop().create_task(recover())
        try:
            await self.tracker.run(on_change, on_error)
        finally:
            recovering.cancel()

    # -- images ------------------------------------------------------------------------
    def image_path(self, record: TaskRecord, index: int) -> Path | None:
        if index < len(record.image_paths):
            path = self.store.task_dir(record.local_id) / record.image_paths[index]
            return path if path.exists() else None
        return None

    async def save_images(
        self, record: TaskRecord, on_error: Callable[[Exception], object] | None = None
    ) -> TaskRecord:
        """Download every result image into the task's folder (Kling deletes them after 30 days).

        The images download side by side; the record lists them in order as soon as each one
        and all before it are saved, so the first image shows while the others still arrive.
        """
        # One download per task at a time (the poller's and e.g. the CLI's may overlap); the
        # second finds the files the first saved.
        async with self._saving.setdefault(record.local_id, asyncio.Lock()):
            return await self._save_images(self.store.get(record.local_id) or record, on_error)

    async def _save_images(self, record: TaskRecord, on_error: Callable[[Exception], object] | None) -> TaskRecord:
        folder = self.store.task_dir(record.local_id)
        paths: list[str | None] = [None] * len(record.image_urls)
        for index, name in enumerate(record.image_paths[: len(paths)]):
            if (folder / name).exists():
                paths[index] = name

        def publish() -> None:
            nonlocal record
            prefix = list(itertools.takewhile(lambda name: name is not None, paths))
            if prefix != record.image_paths:
                record = self._update(record.local_id, image_paths=prefix)

        async def one(index: int, url: str) -> None:
            if paths[index] is not None:
                return
            try:
                saved = await self.client.download(url, folder, f"image-{index + 1}{_image_suffix(url)}")
            except (KlingError, OSError, ValueError) as exc:
                if on_error:
                    on_error(exc)
                return
            await asyncio.to_thread(keep_parameters, saved, record, index)  # how it was made, inside the file
            paths[index] = saved.name
            publish()

        await asyncio.gather(*(one(i, url) for i, url in enumerate(record.image_urls)))
        publish()
        return record

    def running(self) -> Iterable[TaskRecord]:
        return list(self._running.values())
