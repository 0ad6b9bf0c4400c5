"""The headless commands (`generate`, `list`, `show`, `download`, `export`) for scripts.

They run on the same core as the TUI (Workbench, HistoryStore), so a task a script creates
shows up in the TUI's history and the other way round. Results go to stdout (one JSON
object with --json; an array for `list`); errors, warnings and progress go to stderr, and
progress only when stderr is a terminal. Exit codes: see EXIT_*.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import ipaddress
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, TextIO

import httpx

from kling_tui.api.auth import ENV_ACCESS_KEY, ENV_API_KEY, ENV_SECRET_KEY, ApiKeyAuth, Credentials, MissingCredentials, auth_from
from kling_tui.api.client import KlingClient
from kling_tui.config import Settings, load_settings
from kling_tui.base.textsafe import plain
from kling_tui.api.errors import InvalidRequest, KlingError, Problem
from kling_tui.base.locations import history_dir
from kling_tui.api.types import GenerationRequest
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.tracker import StatusChange, Tracker
from kling_tui.work.workbench import Workbench

EXIT_OK = 0
EXIT_INVALID = 2  # bad input; nothing was sent
EXIT_API = 3  # the API or the network failed
EXIT_TASK_FAILED = 4  # the task ended as "failed"
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

# Wire field -> the option that sets it, so a message names what the user typed.
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

CSV_COLUMNS = (
    "local_id", "created_at", "kind", "status", "status_msg", "model", "prompt", "n", "aspect_ratio",
    "task_id", "external_task_id", "units", "error_code", "finished_at", "image_urls", "images", "params",
)
EXPORT_BATCH = 500


def missing_credentials_message(settings: Settings) -> str:
    where = settings.path or "the config file"
    return (
        f"no Kling credentials. Set {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, or {ENV_API_KEY}, "
        f"or put them in {where} ([auth] access_key/secret_key or api_key), or use --sandbox"
    )


class CommandError(Exception):
    """Ends a command with `exit_code`; `record` is the task concerned, when there is one."""

    def __init__(
        self,
        message: str,
        exit_code: int,
        *,
        record: TaskRecord | None = None,
        code: int | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.record = record
        self.code = code
        self.problems = problems or []


# -- text and JSON ------------------------------------------------------------------------


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def image_files(store: HistoryStore, record: TaskRecord) -> list[Path]:
    folder = store.task_dir(record.local_id)
    return [folder / name for name in record.image_paths if (folder / name).exists()]


def record_json(store: HistoryStore, record: TaskRecord) -> dict[str, Any]:
    """A record as --json shows it. The store never keeps credentials, so none can leak here."""
    return {
        "local_id": record.local_id,
        "kind": record.kind,
        "status": record.status,
        "status_msg": record.status_msg,
        "task_id": record.task_id,
        "external_task_id": record.external_task_id,
        "model": record.model,
        "prompt": record.prompt,
        "n": record.n,
        "params": record.params,
        "created_at": _iso(record.created_at),
        "submitted_at": _iso(record.submitted_at),
        "updated_at": _iso(record.updated_at),
        "finished_at": _iso(record.finished_at),
        "units": record.units,
        "error_code": record.error_code,
        "image_urls": list(record.image_urls),
        "images": [str(p) for p in image_files(store, record)],
        "starred": record.starred,
        "note": record.note,
        "group": record.group,
    }


def _dumps(value: Any) -> str:
    # ASCII-only JSON: valid whatever the locale's encoding, and no raw control characters.
    return json.dumps(value, ensure_ascii=True, default=str)


class Console:
    """Where a command writes: results on stdout, the rest on stderr."""

    def __init__(self, as_json: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.interactive = self.stderr.isatty()

    def out(self, line: str = "") -> None:
        print(line, file=self.stdout)

    def json(self, value: Any) -> None:
        print(_dumps(value), file=self.stdout)

    def progress(self, message: str) -> None:
        if self.interactive:
            print(message, file=self.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"kling-tui: warning: {message}", file=self.stderr)

    def error(self, message: str) -> None:
        print(f"kling-tui: error: {message}", file=self.stderr)


def _record_lines(store: HistoryStore, record: TaskRecord) -> Iterator[str]:
    fields = [
        ("local id", record.local_id),
        ("task id", record.task_id or "-"),
        ("external id", record.external_task_id),
        ("status", record.status),
        ("message", record.status_msg),
        ("model", record.model or "-"),
        ("prompt", record.prompt),
        ("n", record.n),
        ("created", _iso(record.created_at)),
        ("finished", _iso(record.finished_at)),
        ("units", record.units),
    ]
    for name, value in fields:
        if value not in (None, ""):
            yield f"{name + ':':<13}{plain(value)}"
    files = image_files(store, record)
    if files:
        yield "images:"
        yield from (f"  {plain(path)}" for path in files)
    elif record.image_urls:
        yield "image urls:"
        yield from (f"  {plain(url)}" for url in record.image_urls)


# -- connecting ---------------------------------------------------------------------------


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


def _is_loopback(base_url: str) -> bool:
    host = httpx.URL(base_url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        base_url, auth, has_credentials = server.base_url, ApiKeyAuth(DEFAULT_API_KEY), True
    else:
        base_url = settings.base_url
        try:
            auth = auth_from(Credentials(settings.access_key, settings.secret_key, settings.api_key))
            has_credentials = True
        except MissingCredentials:
            auth, has_credentials = _NoCredentials(missing_credentials_message(settings)), False
    try:
        client = KlingClient(base_url, auth, caps=caps)
    except ValueError as exc:
        raise CommandError(f"base URL: {exc}", EXIT_INVALID) from None
    # A local server (the sandbox) answers in no time and its tasks take seconds: poll briskly.
    if _is_loopback(client.base_url):
        interval = (0.1, 0.5)
    else:
        interval = (settings.poll_interval, max(5.0, settings.poll_interval))
    tracker = Tracker(client, min_interval=interval[0], max_interval=interval[1])
    workbench = Workbench(client, store, caps, tracker=tracker, auto_download=False)
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


def _invalid(exc: InvalidRequest) -> CommandError:
    parts = []
    for problem in exc.problems:
        option = OPTION_FOR_FIELD.get(problem.field)
        name = f"{problem.field} ({option})" if option and option != problem.field else problem.field
        parts.append(f"{name}: {problem.rule}")
    return CommandError("invalid request, nothing was sent: " + "; ".join(parts), EXIT_INVALID, problems=exc.problems)


def _out_dir(path: str | None) -> Path | None:
    if path is None:
        return None
    folder = Path(os.path.expanduser(path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--out: cannot create {folder}: {exc.strerror or exc}", EXIT_INVALID) from None
    return folder


def _check_finished(record: TaskRecord) -> None:
    """Raise unless the task succeeded: a failure is exit 4, anything else has no images yet."""
    if record.status == "failed":
        raise CommandError(f"the task failed: {plain(record.status_msg) or 'no reason given'}", EXIT_TASK_FAILED, record=record)
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


async def wait_until_final(session: Session, record: TaskRecord, console: Console) -> TaskRecord:
    """Follow the task with the shared tracker until it is final; API errors end the wait (exit 3)."""
    workbench = session.workbench
    latest = record
    done = asyncio.Event()
    failures: list[Exception] = []

    def on_record(changed: TaskRecord) -> None:
        nonlocal latest
        if changed.local_id != record.local_id:
            return
        if changed.status != latest.status:
            console.progress(f"{changed.local_id}: {changed.status}")
        latest = changed
        if changed.is_final:
            done.set()

    def on_error(exc: Exception) -> None:
        failures.append(exc)
        done.set()

    if record.is_final:
        return record
    workbench.subscribe(on_record)
    follower = asyncio.create_task(workbench.follow(on_error=on_error))
    try:
        await done.wait()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    if not latest.is_final and failures:
        error = failures[0]
        if isinstance(error, MissingCredentials):
            raise error
        code = error.code if isinstance(error, KlingError) else None
        raise CommandError(f"following the task failed: {plain(error)}", EXIT_API, record=latest, code=code)
    return latest


async def refresh(session: Session, record: TaskRecord) -> TaskRecord:
    """Bring a task that is not final up to date from the server."""
    workbench = session.workbench
    if record.status == "queued":  # waiting in the TUI's local queue: the server knows nothing yet
        return record
    if record.task_id is None:
        record = await workbench.confirm(record)
        if record.status == "pending" and record.status_msg.startswith("not confirmed"):
            raise CommandError(plain(record.status_msg), EXIT_API, record=record)
        return record
    try:
        task = await session.client.get(record.task_id, kind=record.kind)
    except KlingError as exc:
        raise CommandError(f"could not refresh the task: {plain(exc)}", EXIT_API, record=record, code=exc.code) from None
    workbench.tracker.untrack(task.task_id)
    updated = workbench.apply(StatusChange(task=task, kind=record.kind, previous_status=record.status))
    return updated or record


# -- commands -----------------------------------------------------------------------------


async def cmd_generate(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    caps = settings.capabilities()
    request = GenerationRequest(
        prompt=args.prompt,
        model_name=args.model or caps.default_model,
        negative_prompt=args.negative,
        image=args.image,
        image_reference=args.image_reference,
        image_fidelity=args.image_fidelity,
        human_fidelity=args.human_fidelity,
        resolution=args.resolution,
        n=args.n,
        aspect_ratio=args.aspect_ratio,
        callback_url=args.callback_url,
        external_task_id=args.external_task_id,
    )
    try:
        await asyncio.to_thread(request.build, caps)  # reads and checks a local --image
    except InvalidRequest as exc:
        raise _invalid(exc) from None
    if args.external_task_id:
        used = store.find_by_external_id(args.external_task_id)
        if used is not None:
            raise CommandError(
                f"external_task_id (--external-task-id): already used by task {used.local_id}; it must be unique",
                EXIT_INVALID,
            )
    if args.out and not args.wait:
        raise CommandError("--out: only works with --wait (the images exist once the task has succeeded)", EXIT_INVALID)
    out = _out_dir(args.out)
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        session.require_credentials(settings)
        try:
            record = await session.workbench.submit(request)  # recorded before it is sent
        except InvalidRequest as exc:
            raise _invalid(exc) from None
        if record.status == "not_created":
            raise CommandError(
                f"the task was not created: {plain(record.status_msg)}", EXIT_API, record=record, code=record.error_code
            )
        if record.task_id is None:
            raise CommandError(
                f"{plain(record.status_msg)}; the task is in the history as {record.local_id} "
                f"and `kling-tui show {record.local_id}` looks it up",
                EXIT_API,
                record=record,
            )
        console.progress(f"{record.local_id}: {record.status} (task {record.task_id})")
        if not args.wait:
            if args.sandbox:
                console.warn("the in-process sandbox stops with this command; add --wait to get the images")
            _emit_record(console, store, record)
            return EXIT_OK
        record = await wait_until_final(session, record, console)
        _check_finished(record)
        record, copies = await save_and_copy(session, record, out)
    _emit_images(console, store, record, copies)
    return EXIT_OK


async def cmd_show(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    record = find_record(store, args.task_id)
    if record.is_active and record.status != "queued":
        async with open_session(settings, store, sandbox=args.sandbox) as session:
            record = await refresh(session, record)
            if record.status == "succeed":
                # Result URLs expire after 30 days: save them now, as the TUI would have.
                errors: list[Exception] = []
                record = await session.workbench.save_images(record, on_error=errors.append)
                for error in errors[:1]:
                    console.warn(f"could not save the images: {plain(error)}")
    _emit_record(console, store, record)
    return EXIT_OK


async def cmd_download(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    record = find_record(store, args.task_id)
    out = _out_dir(args.out)
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        if record.is_active:
            record = await refresh(session, record)
        _check_finished(record)
        record, copies = await save_and_copy(session, record, out)
    _emit_images(console, store, record, copies)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, store: HistoryStore, console: Console) -> int:
    if args.limit < 1:
        raise CommandError("--limit: must be at least 1", EXIT_INVALID)
    rows = store.recent(limit=args.limit)
    if console.as_json:
        records = (store.get(row.local_id) for row in rows)
        console.json([record_json(store, r) for r in records if r is not None])
        return EXIT_OK
    for row in rows:
        prompt = plain(row.prompt)
        if len(prompt) > 60:
            prompt = prompt[:59] + "…"
        console.out(f"{row.local_id}  {row.status:<11} {plain(row.model or '-'):<13} n={row.n}  {prompt}")
    return EXIT_OK


def _all_records(store: HistoryStore) -> Iterator[TaskRecord]:
    offset = 0
    while True:
        rows = store.recent(limit=EXPORT_BATCH, offset=offset)
        for row in rows:
            record = store.get(row.local_id)
            if record is not None:
                yield record
        if len(rows) < EXPORT_BATCH:
            return
        offset += len(rows)


def cmd_export(args: argparse.Namespace, store: HistoryStore, console: Console) -> int:
    if args.format == "jsonl":
        for record in _all_records(store):
            console.out(_dumps(record_json(store, record)))
        return EXIT_OK
    writer = csv.writer(console.stdout)
    writer.writerow(CSV_COLUMNS)
    for record in _all_records(store):
        data = record_json(store, record)
        data["image_urls"] = " ".join(data["image_urls"])
        data["images"] = " ".join(data["images"])
        data["params"] = _dumps(data["params"])
        writer.writerow([_csv_cell(data.get(c)) for c in CSV_COLUMNS])
    return EXIT_OK


# A spreadsheet runs a cell starting with one of these as a formula (e.g. a prompt
# "=HYPERLINK(...)"); a leading apostrophe makes it text. JSONL keeps the raw values.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _emit_record(console: Console, store: HistoryStore, record: TaskRecord) -> None:
    if console.as_json:
        console.json(record_json(store, record))
    else:
        for line in _record_lines(store, record):
            console.out(line)


def _emit_images(console: Console, store: HistoryStore, record: TaskRecord, copies: list[Path]) -> None:
    """The saved images: the --out copies when there are, else the files in the history."""
    if console.as_json:
        data = record_json(store, record)
        data["copies"] = [str(p) for p in copies]
        console.json(data)
        return
    for path in copies or image_files(store, record):
        console.out(plain(path))


# -- entry --------------------------------------------------------------------------------


def _report(console: Console, store: HistoryStore | None, error: CommandError) -> None:
    console.error(error.message)
    if not console.as_json:
        return
    detail: dict[str, Any] = {"exit_code": error.exit_code, "message": error.message}
    if error.code is not None:
        detail["code"] = error.code
    if error.problems:
        detail["problems"] = [{"field": p.field, "rule": p.rule} for p in error.problems]
    if error.record is not None and store is not None:
        console.json({**record_json(store, error.record), "error": detail})
    else:
        console.json({"error": detail})


async def _dispatch(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    if args.command == "generate":
        return await cmd_generate(args, settings, store, console)
    if args.command == "show":
        return await cmd_show(args, settings, store, console)
    if args.command == "download":
        return await cmd_download(args, settings, store, console)
    if args.command == "list":
        return cmd_list(args, store, console)
    if args.command == "export":
        return cmd_export(args, store, console)
    raise ValueError(f"not a headless command: {args.command}")


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one headless command; returns the exit code."""
    if stdout is None and hasattr(sys.stdout, "reconfigure"):
        # A prompt the terminal's encoding cannot show must not crash the command.
        sys.stdout.reconfigure(errors="backslashreplace")
    console = Console(bool(getattr(args, "json", False)), stdout, stderr)
    settings = load_settings()
    args.sandbox = bool(getattr(args, "sandbox", False) or settings.sandbox)
    for warning in settings.warnings:
        console.warn(plain(warning))
    store: HistoryStore | None = None
    try:
        store = HistoryStore(history_dir(sandbox=args.sandbox))
        for warning in store.warnings:
            console.warn(plain(warning))
        code = asyncio.run(_dispatch(args, settings, store, console))
        console.stdout.flush()  # here, so that a closed pipe is reported by the handler below
        return code
    except CommandError as exc:
        _report(console, store, exc)
        return exc.exit_code
    except MissingCredentials:
        _report(console, None, CommandError(missing_credentials_message(settings), EXIT_INVALID))
        return EXIT_INVALID
    except KlingError as exc:
        _report(console, None, CommandError(plain(exc), EXIT_API, code=exc.code))
        return EXIT_API
    except BrokenPipeError:
        # The reader went away (`kling-tui export ... | head`): stop quietly, as `yes | head` does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        console.error("interrupted; a task already sent goes on, see `kling-tui list`")
        return EXIT_INTERRUPTED
    finally:
        if store is not None:
            store.close()
