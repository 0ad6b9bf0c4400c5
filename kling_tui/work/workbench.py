"""Submitting, following and saving tasks: the loop the TUI and the CLI share.

The workbench ties the client, the tracker and the history store together, and tells its
listeners about every record it changes. History is written before each create is sent
(write-ahead), so a task the server may have created is never missing from it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kling_tui.api.capabilities import Capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import InvalidRequest, KlingError, NetworkError
from kling_tui.api.types import Request, Task, request_from_params
from kling_tui.base.processes import is_alive, is_this_process, pid_of, role_of, this_process
from kling_tui.base.textsafe import plain
from kling_tui.history.metadata import keep_parameters
from kling_tui.history.store import MAX_STATUS_CHARS, STATUSES, HistoryStore, TaskRecord
from kling_tui.work.budget import SlotBudget
from kling_tui.work.tracker import StatusChange, Tracker

log = logging.getLogger(__name__)

Listener = Callable[[TaskRecord], object]

TASK_NOT_FOUND = 1201
BUSY = 1303
WAITING = ("queued", "pending")  # not yet answered by the server
# kling-protocol.md: wait at least a second after 1303.
BUSY_RETRY_SECONDS = 1.0
WAITING_FOR_SLOT = "waiting for a free slot (1303)"
CONFIRM_EVERY = 5  # recovery ticks between lookups of unanswered creates
SERVER_STATUSES = ("submitted", "processing", "succeed", "failed")
UNSAVED_SCAN = 200  # recent successes checked on start for images not yet saved
URL_LIFETIME = 30 * 86400  # Kling deletes result images 30 days after the task


class HistoryWriteError(OSError):
    """A change could not be written to history (read-only directory, full disk). Nothing
    recorded before is lost; the change is tried again."""


class SlotsFull(Exception):
    """The server answered 1303: not created, the task goes back to the local queue."""


def status_from_server(raw: str) -> str:
    """The status to record for a server's `task_status`.

    One the protocol does not define ("cancelled", a number) is kept as data, made printable;
    one that reads like a local status ("queued", "not_created") is marked as the server's,
    so it is never taken for a local state (queued would be sent again, not_created is final).
    """
    if raw in SERVER_STATUSES:
        return raw
    text = "".join(ch if ch.isprintable() else "?" for ch in " ".join(plain(raw).split()))
    text = text[: MAX_STATUS_CHARS - 7] or "unknown"
    return f"server:{text}" if text in STATUSES or text.startswith("server:") else text


def _asked_for(record: TaskRecord) -> int:
    """How many images the task asked for (n, or series_amount for a series)."""
    for name in ("n", "series_amount"):
        value = record.params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 1


def span(seconds: float | None) -> str:
    """30m, 1h, 45s: how a wait is written (and --max-wait given)."""
    if seconds is None:
        return "ever"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


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
        role: str = "app",
    ) -> None:
        self.client = client
        self.store = store
        self.caps = caps
        self.tracker = tracker or Tracker(client)
        self.auto_download = auto_download
        self.budget = budget or SlotBudget()
        # Stamped on every task this workbench records: who sends it (base.processes).
        self.owner = this_process(role)
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
        self._slot_waits: dict[str, int] = {}  # 1303 answers per queued task, for the status line
        # task_id -> local_id of every task this workbench follows: a change it polled is
        # recorded even when the shared index has not caught up with that task yet.
        self._followed: dict[str, str] = {}

    # -- listeners ---------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _changed(self, record: TaskRecord) -> TaskRecord:
        if record.status_msg and record.status in ("pending", "queued", "not_created", "failed"):
            log.info("%s %s: %s", record.local_id, record.status, record.status_msg)
        if record.status == "pending" or (record.task_id and not record.is_final):
            # Slots are held from the create request on (pending) until the task ends, also
            # while the server reports a status kling-tui does not know.
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
        try:
            record = self.store.update(local_id, **changes)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryWriteError(f"could not write task {local_id} to history: {exc}") from exc
        return self._changed(record)

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
            request.kind,
            request.params(),
            external_task_id=request.external_task_id,
            parents=request.parents,
            owner=self.owner,
            status=status,
            template=(request.template.body, request.template.values) if request.template else None,
        )
        request.external_task_id = record.external_task_id
        if group:
            record = self.store.update(record.local_id, group=group)
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
            try:
                record = self._update(record.local_id, status="pending")
            except BaseException:
                self._in_flight.discard(record.local_id)
                self.queue.insert(0, record.local_id)
                self._requests[record.local_id] = request
                raise
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
            record = await self.send(record, request, requeue_busy=True)
        except SlotsFull:
            # Not created, so safe to send again: back to the head of the queue, still queued
            # (never "not created"), and whoever waits for it keeps waiting.
            self.budget.busy(max(0, in_use - record.slots))
            self._slot_waits[record.local_id] = self._slot_waits.get(record.local_id, 0) + 1
            self.queue.insert(0, record.local_id)
            self._requests[record.local_id] = request
            self._in_flight.discard(record.local_id)
            try:
                self._update(record.local_id, status="queued", status_msg=WAITING_FOR_SLOT, error_code=BUSY)
            except HistoryWriteError as exc:
                log.error("%s", exc)
            asyncio.get_running_loop().call_later(BUSY_RETRY_SECONDS, self.pump)
            return
        except Exception as exc:  # never lose the record: it stays pending and is looked up later
            log.warning("%s: create not confirmed: %s", record.local_id, exc)
            try:
                record = self._update(record.local_id, status_msg=f"not confirmed yet: {exc}")
            except HistoryWriteError as write_error:
                log.error("%s", write_error)
        finally:
            self._in_flight.discard(record.local_id)
        self._slot_waits.pop(record.local_id, None)
        # Also answers a submit() whose create is still unconfirmed (pending).
        for waiter in self._waiters.pop(record.local_id, []):
            if not waiter.done():
                waiter.set_result(record)
        self.pump()

    def slot_waits(self, local_id: str) -> int:
        """How many times the server answered 1303 to this task's create so far."""
        return self._slot_waits.get(local_id, 0)

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

    def cancel(self, local_id: str, reason: str = "cancelled before it was sent") -> TaskRecord | None:
        """Drop a queued task before it is sent; it stays in history as not created."""
        if local_id not in self.queue:
            return None
        self.queue.remove(local_id)
        self._requests.pop(local_id, None)
        self._slot_waits.pop(local_id, None)
        return self._update(local_id, status="not_created", status_msg=reason)

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

    async def submit(self, request: Request, group: str | None = None, *, patience: float | None = None) -> TaskRecord:
        """Queue, and wait for the create's answer; returns the record in its state after it.

        A 1303 is not an answer: the task waits in the queue for a free slot. With `patience`
        (seconds), a task still not sent by then is dropped and returned as not created.
        """
        queued = self.enqueue(request, group=group)
        return await self.wait_sent(queued.local_id, patience)

    async def wait_sent(self, local_id: str, patience: float | None = None) -> TaskRecord:
        """Wait until the create of a queued task has an answer (see `submit`)."""
        # enqueue() may already have settled it (e.g. more slots than the pack has).
        record = self.store.get(local_id)
        if record is None or record.status not in WAITING:
            if record is None:
                raise KeyError(local_id)
            return record
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(local_id, []).append(waiter)
        try:
            async with asyncio.timeout(patience):  # not wait_for: see Tracker._pause
                return await asyncio.shield(waiter)
        except TimeoutError:
            pass
        # Dropped once it is back in the queue; while a create is on its way, its answer
        # decides (the client's deadline bounds it), and a 1303 puts it back in the queue.
        while not waiter.done():
            waits = self.slot_waits(local_id)
            why = f"; the server answered 1303 (all slots in use) {waits} times" if waits else ""
            dropped = self.cancel(local_id, f"gave up waiting for a free slot after {span(patience)}{why}")
            if dropped is not None:
                return dropped
            await asyncio.wait([waiter], timeout=0.05)
        return waiter.result()

    async def send(self, record: TaskRecord, request: Request, *, requeue_busy: bool = False) -> TaskRecord:
        """Send the create of an already recorded task.

        With `requeue_busy`, a 1303 raises SlotsFull and changes nothing: the caller queues
        the task again. Without it, 1303 records the task as not created.
        """
        request.external_task_id = record.external_task_id
        if record.status != "pending":
            record = self._update(record.local_id, status="pending", status_msg="")
        try:
            task = await self.client.create(request)
        except InvalidRequest as exc:
            return self._update(record.local_id, status="not_created", status_msg=str(exc), error_code=1201)
        except KlingError as exc:
            if requeue_busy and exc.code == BUSY and not isinstance(exc, NetworkError):
                raise SlotsFull(str(exc)) from exc
            return self._settle_failed_create(record, exc)
        return self._adopt(record, task)

    def _settle_failed_create(self, record: TaskRecord, exc: KlingError) -> TaskRecord:
        if isinstance(exc, NetworkError):
            if exc.maybe_sent:
                # The server may hold the task: keep it pending and look it up later.
                return self._update(record.local_id, status_msg=f"not confirmed yet: {exc}")
            return self._update(record.local_id, status="not_created", status_msg=str(exc))
        if (exc.http_status or 0) >= 500:
            # A server error, possibly from the lookup after an unclear create: the task
            # may exist. Keep it pending; confirm() settles it by its external_task_id.
            return self._update(record.local_id, status_msg=f"not confirmed yet: {exc}", error_code=exc.code)
        return self._update(record.local_id, status="not_created", status_msg=str(exc), error_code=exc.code)

    def _adopt(self, record: TaskRecord, task: Task) -> TaskRecord:
        now = time.time()
        record = self._update(
            record.local_id,
            task_id=task.task_id,
            status=status_from_server(task.task_status),
            status_msg=task.task_status_msg,
            submitted_at=record.submitted_at or now,
            updated_at=now,
            error_code=None,
        )
        if task.is_final:
            return self._finish(record, task)
        if record.status not in SERVER_STATUSES:
            log.warning("task %s: unknown status %r from the server; following it", plain(task.task_id), record.status)
        self._follow(record, task.task_status)
        self.tracker.wake()
        return record

    # -- following ---------------------------------------------------------------------
    async def reconcile(self) -> list[TaskRecord]:
        """On start: follow tasks still running, look up creates never confirmed, and resume
        the queue. Tasks another live process owns are its own: left alone."""
        changed: list[TaskRecord] = []
        queued: list[TaskRecord] = []
        for record in self.store.active():
            if self._handles(record.local_id):
                continue
            try:
                await self._reconcile_one(record, changed, queued)
            except HistoryWriteError as exc:  # reported; the next start tries again
                log.error("%s", exc)
        queued.sort(key=lambda r: (r.queue_position or 0.0, r.created_at))
        for record in queued:
            if record.owner != self.owner:
                try:
                    taken = self.store.claim(record.local_id, self.owner, status="queued", from_owner=record.owner)
                except OSError as exc:
                    log.error("could not take over queued task %s: %s", record.local_id, exc)
                    continue
                if taken is None:  # another process starting now took it, or it changed meanwhile
                    continue
                record = taken
            if record.local_id not in self.queue:
                self.queue.append(record.local_id)
            self._changed(record)
        self.pump()
        await self.save_missing_images()
        return changed

    async def _reconcile_one(self, record: TaskRecord, changed: list[TaskRecord], queued: list[TaskRecord]) -> None:
        if record.task_id:
            # Polling is read-only: safe whoever else follows it too.
            self._changed(record)
            self._follow(record)
            return
        mine = record.owner is None or is_this_process(record.owner)
        if not mine and is_alive(record.owner):
            return
        if record.status == "queued":
            if mine or role_of(record.owner) == "app":
                queued.append(record)
            else:
                # Whoever queued it (a CLI command) has ended without sending it, and told
                # its user so: it must not be sent behind their back.
                changed.append(self._orphaned(record))
            return
        changed.append(await self.confirm(record))

    def _follow(self, record: TaskRecord, status: str | None = None) -> None:
        """Poll the task from now on (`status`: the server's word for it, when just heard)."""
        assert record.task_id is not None
        self._followed[record.task_id] = record.local_id
        self.tracker.track(record.task_id, record.kind, status or record.status)

    def _handles(self, local_id: str) -> bool:
        """Whether this workbench is sending or following the task already."""
        return local_id in self._in_flight or local_id in self.queue or local_id in self._running

    def _orphaned(self, record: TaskRecord) -> TaskRecord:
        pid = pid_of(record.owner)
        return self._update(
            record.local_id,
            status="not_created",
            status_msg=f"not sent: the kling-tui command that queued it (pid {pid}) ended first; "
            "Retry task sends it again",
        )

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
        task = change.task
        try:
            local_id = self._followed.get(task.task_id)
            record = self.store.get(local_id) if local_id else self.store.find_by_task_id(task.task_id)
            if record is None:
                log.warning("task %s (%s) is not in history", plain(task.task_id), plain(task.task_status))
                return None
            status = status_from_server(task.task_status)
            changes = dict(status=status, status_msg=task.task_status_msg, updated_at=time.time())
            if task.is_final:
                changes.update(self._final_changes(task, record))
            elif status not in SERVER_STATUSES:
                log.warning("task %s: unknown status %r from the server; following it", plain(task.task_id), status)
            record = self.store.update(record.local_id, **changes)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryWriteError(f"could not write task {plain(task.task_id)} to history: {exc}") from exc
        if task.is_final:
            self._followed.pop(task.task_id, None)
        return record

    def _announce_change(self, record: TaskRecord | None) -> TaskRecord | None:
        if record is None:
            return None
        self._changed(record)
        if record.is_final:
            self.pump()
        return record

    def _finish(self, record: TaskRecord, task: Task) -> TaskRecord:
        return self._update(record.local_id, **self._final_changes(task, record))

    @staticmethod
    def _final_changes(task: Task, record: TaskRecord) -> dict:
        urls = [img.url for img in sorted(task.images, key=lambda i: i.index)]
        asked = _asked_for(record)
        if len(urls) > asked:
            # More than the task asked for: a broken or hostile answer. Save what was asked.
            extra = urls[asked:]
            log.warning(
                "task %s lists %d images for %d asked; keeping the first %d, ignoring %d: %s%s",
                plain(task.task_id),
                len(urls),
                asked,
                asked,
                len(extra),
                ", ".join(plain(url)[:200] for url in extra[:5]),
                " …" if len(extra) > 5 else "",
            )
            urls = urls[:asked]
        return dict(finished_at=time.time(), units=task.final_unit_deduction, image_urls=urls)

    async def follow(self, on_error: Callable[[Exception], object] | None = None) -> None:
        """Poll forever; each change is recorded and its images saved."""

        async def report(exc: Exception) -> None:
            log.error("%s", exc)
            if on_error is not None:
                result = on_error(exc)
                if asyncio.iscoroutine(result):
                    await result

        async def save(record: TaskRecord) -> None:
            try:
                await self.save_images(record, on_error=on_error)
            except Exception as exc:  # e.g. history not writable: the next start saves them
                await report(exc)

        async def on_change(change: StatusChange) -> None:
            record = await self.apply_in_thread(change)
            if record is not None and record.status == "succeed" and self.auto_download:
                # In the background: the next poll cycle must not wait for the downloads.
                self._spawn(save(record))

        async def recover() -> None:
            # The budget recovers with time: give waiting tasks a chance now and then, and
            # settle creates that got no clear answer instead of letting them hold slots.
            ticks = 0
            while True:
                await asyncio.sleep(BUSY_RETRY_SECONDS)
                ticks += 1
                try:
                    if self.queue:
                        self.pump()
                    if ticks % CONFIRM_EVERY == 0:
                        await self.confirm_unanswered()
                except Exception as exc:  # a full disk, say: report it and try again next tick
                    await report(exc)

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
