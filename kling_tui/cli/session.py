"""A command's connection to Kling (or an in-process sandbox) and the waiting, refreshing and saving
that `generate`, `show` and `download` share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from kling_tui.api.auth import (
    ENV_ACCESS_KEY,
    ENV_API_KEY,
    ENV_SECRET_KEY,
    ApiKeyAuth,
    Auth,
    Credentials,
    MissingCredentials,
    auth_from,
)
from kling_tui.api.client import KlingClient, is_loopback
from kling_tui.api.errors import KlingError
from kling_tui.base.locations import is_storage_problem, storage_error
from kling_tui.base.processes import is_alive, is_this_process
from kling_tui.base.textsafe import plain
from kling_tui.cli.output import (
    EXIT_API,
    EXIT_INVALID,
    EXIT_STORAGE,
    EXIT_TASK_FAILED,
    CommandError,
    Console,
    image_files,
)
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.tracker import StatusChange, Tracker
from kling_tui.work.workbench import SERVER_STATUSES, HistoryWriteError, Workbench, span

OPTION_FOR_FIELD = {
    "prompt": "PROMPT",
    "model_name": "--model",
    "negative_prompt": "--negative",
    "n": "--n",
    "aspect_ratio": "--aspect-ratio",
    "resolution": "--resolution",
    "image": "--image",
    "image_reference": "--image-reference",
    "image_fidelity": "--image-fidelity",
    "human_fidelity": "--human-fidelity",
    "external_task_id": "--external-task-id",
    "callback_url": "--callback-url",
}


def missing_credentials_message(settings: Settings) -> str:
    where = settings.path or "the config file"
    return (
        f"no Kling credentials. Set {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, or {ENV_API_KEY}, "
        f"or put them in {where} ([auth] access_key/secret_key or api_key), or use --sandbox"
    )


class _NoCredentials:
    """Stands in for auth when none is configured: fine for downloads (which never send
    credentials), and any API call fails with a message saying how to set them."""

    scheme = "none"

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return "NoCredentials()"

    def invalidate(self) -> None:
        pass

    def authorization_header(self) -> str:
        raise MissingCredentials(self.message)


@dataclass
class Session:
    workbench: Workbench
    client: KlingClient
    has_credentials: bool

    def require_credentials(self, settings: Settings) -> None:
        if not self.has_credentials:
            raise CommandError(missing_credentials_message(settings), EXIT_INVALID)


@contextlib.asynccontextmanager
async def open_session(settings: Settings, store: HistoryStore, *, sandbox: bool) -> AsyncIterator[Session]:
    """A client and a workbench over `store`; with `sandbox`, an in-process sandbox server."""
    server = None
    caps = settings.capabilities()
    if sandbox:
        from kling_tui.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

        server = await asyncio.to_thread(Sandbox(SandboxConfig()).start)
        auth: Auth = ApiKeyAuth(DEFAULT_API_KEY)
        assert server.base_url is not None  # start() returns once it serves
        base_url, has_credentials = server.base_url, True
    else:
        base_url = settings.base_url
        try:
            auth = auth_from(Credentials(settings.access_key, settings.secret_key, settings.api_key))
            has_credentials = True
        except MissingCredentials:
            auth, has_credentials = _NoCredentials(missing_credentials_message(settings)), False
    try:
        client = KlingClient(base_url, auth, caps=caps, request_deadline=settings.request_deadline)
    except ValueError as exc:
        raise CommandError(f"base URL: {exc}", EXIT_INVALID) from None
    # A local server (the sandbox) answers in no time and its tasks take seconds: poll briskly.
    if is_loopback(client.base_url):
        interval = (0.1, 0.5)
    else:
        interval = (settings.poll_interval, max(5.0, settings.poll_interval))
    tracker = Tracker(client, min_interval=interval[0], max_interval=interval[1])
    workbench = Workbench(client, store, caps, tracker=tracker, auto_download=False, role="cli")
    try:
        async with client:
            yield Session(workbench, client, has_credentials)
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


# -- shared steps -------------------------------------------------------------------------


def find_record(store: HistoryStore, task_id: str) -> TaskRecord:
    """A record by local id, server task_id or external_task_id."""
    task_id = task_id.strip()
    record = store.get(task_id) or store.find_by_task_id(task_id) or store.find_by_external_id(task_id)
    if record is None:
        raise CommandError(
            f"TASK_ID: no task {plain(task_id)} in the history (give a local id, a task_id or an external_task_id; "
            "see `kling-tui list`)",
            EXIT_INVALID,
        )
    return record


def out_dir(path: str | None) -> Path | None:
    if path is None:
        return None
    folder = Path(os.path.expanduser(path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--out: cannot create {folder}: {exc.strerror or exc}", EXIT_INVALID) from None
    return folder


def check_finished(record: TaskRecord) -> None:
    """Raise unless the task succeeded: a failure is exit 4, anything else has no images yet."""
    if record.status == "failed":
        raise CommandError(
            f"the task failed: {plain(record.status_msg) or 'no reason given'}", EXIT_TASK_FAILED, record=record
        )
    if record.status == "not_created":
        raise CommandError(
            f"the task was not created: {plain(record.status_msg)}", EXIT_API, record=record, code=record.error_code
        )
    if record.status != "succeed":
        raise CommandError(
            f"task {record.local_id} is not finished (status {record.status}); try again when it has succeeded",
            EXIT_INVALID,
            record=record,
        )


async def save_and_copy(session: Session, record: TaskRecord, out: Path | None) -> tuple[TaskRecord, list[Path]]:
    """Save the images into the task's history folder, then copy them into `out`.

    Returns the record and the copies (empty without `out`).
    """
    errors: list[Exception] = []
    record = await session.workbench.save_images(record, on_error=errors.append)
    store = session.workbench.store
    full = next((e for e in errors if isinstance(e, OSError) and is_storage_problem(e)), None)
    if full is not None:  # the disk, not the service: the task is done and its images wait on the server
        error = storage_error("save the images into", store.task_dir(record.local_id), full)
        later = f"Task {record.local_id} is {plain(record.status)}: `kling-tui download {record.local_id}` saves them later."
        raise CommandError(f"{error.message} {later}", EXIT_STORAGE, record=record)
    if errors or len(image_files(store, record)) < len(record.image_urls):
        reason = plain(errors[0]) if errors else "not every image could be saved"
        raise CommandError(f"could not save the images: {reason}", EXIT_API, record=record)
    copies = []
    if out is not None:
        for path in image_files(store, record):
            target = out / f"{record.local_id}-{path.name}"
            await asyncio.to_thread(_copy, path, target)
            copies.append(target)
    return record, copies


def _copy(source: Path, target: Path) -> None:
    # Through a temp file, so a reader never sees half an image.
    tmp = target.with_name(f".{target.name}.part")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


async def wait_until_final(
    session: Session,
    record: TaskRecord,
    console: Console,
    *,
    patience: float | None = None,
    max_wait: float | None = None,
) -> TaskRecord:
    """Follow the task with the shared tracker until it is final; API errors end the wait (exit 3),
    and so does `patience` (seconds) running out (`max_wait`, the whole command's, is named in
    the message). A history write that fails is reported and tried again: the wait goes on."""
    (latest,) = await wait_until_all_final(session, [record], console, patience=patience, max_wait=max_wait)
    return latest


async def wait_until_all_final(
    session: Session,
    records: list[TaskRecord],
    console: Console,
    *,
    patience: float | None = None,
    max_wait: float | None = None,
) -> list[TaskRecord]:
    """`wait_until_final` for several tasks at once: one follower, so no change is lost between them."""
    workbench = session.workbench
    latest = {r.local_id: r for r in records}
    done = asyncio.Event()
    failures: list[Exception] = []

    def on_record(changed: TaskRecord) -> None:
        previous = latest.get(changed.local_id)
        if previous is None:
            return
        if changed.status != previous.status:
            unknown = changed.status not in SERVER_STATUSES and not changed.is_final
            note = " (a status kling-tui does not know; following until succeed or failed)" if unknown else ""
            console.progress(f"{changed.local_id}: {plain(changed.status)}{note}")
        latest[changed.local_id] = changed
        if all(r.is_final for r in latest.values()):
            done.set()

    def on_error(exc: Exception) -> None:
        if isinstance(exc, HistoryWriteError):
            console.warn(f"{plain(exc)}; trying again (nothing recorded before is lost)")
            return
        failures.append(exc)
        done.set()

    if all(r.is_final for r in records):
        return records
    workbench.subscribe(on_record)
    follower = asyncio.create_task(workbench.follow(on_error=on_error))
    try:
        async with asyncio.timeout(patience):  # not wait_for: see Tracker._pause
            await done.wait()
    except TimeoutError:
        first, *others = [r for r in latest.values() if not r.is_final]
        also = f" (and {len(others)} more)" if others else ""
        raise CommandError(
            f"gave up waiting after {span(max_wait or patience or 0)} (--max-wait): task {first.local_id}{also} "
            f"is still {plain(first.status)} on the server; `kling-tui show {first.local_id}` looks again",
            EXIT_API,
            record=first,
        ) from None
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    unfinished = [r for r in latest.values() if not r.is_final]
    if unfinished and failures:
        error = failures[0]
        if isinstance(error, MissingCredentials):
            raise error
        code = error.code if isinstance(error, KlingError) else None
        raise CommandError(f"following the task failed: {plain(error)}", EXIT_API, record=unfinished[0], code=code)
    return list(latest.values())


async def refresh(session: Session, record: TaskRecord) -> TaskRecord:
    """Bring a task that is not final up to date from the server."""
    workbench = session.workbench
    if record.status == "queued":  # waiting in the TUI's local queue: the server knows nothing yet
        return record
    if record.task_id is None:
        if record.owner and not is_this_process(record.owner) and is_alive(record.owner):
            # Its create is on its way in another kling-tui process: that one settles it.
            return record
        record = await workbench.confirm(record)
        if record.status == "pending" and record.status_msg.startswith("not confirmed"):
            raise CommandError(plain(record.status_msg), EXIT_API, record=record)
        return record
    try:
        task = await session.client.get(record.task_id, kind=record.kind)
    except KlingError as exc:
        raise CommandError(
            f"could not refresh the task: {plain(exc)}", EXIT_API, record=record, code=exc.code
        ) from None
    workbench.tracker.untrack(task.task_id)
    updated = workbench.apply(StatusChange(task=task, kind=record.kind, previous_status=record.status))
    return updated or record


# -- commands -----------------------------------------------------------------------------
