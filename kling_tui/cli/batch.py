"""`kling-tui batch FILE`: one task per row of a JSONL or CSV file, idempotent and resumable.

Each row's `external_task_id` is derived from the file's resolved path and the row's `id`
(or, without one, the row's content and how many identical rows came before it). History is
looked up by that id before anything is sent, so running the file again after a crash,
Ctrl+C or kill -9 sends only what was never sent, and a create that got no answer is first
looked up on the server (GET by external_task_id) instead of being sent again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import types
import typing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kling_tui.api.client import PATHS
from kling_tui.api.errors import InvalidRequest
from kling_tui.api.prices import price
from kling_tui.api.types import NOT_PARAMS, Parent, Request, request_from_params
from kling_tui.base.locations import data_dir
from kling_tui.base.textsafe import plain
from kling_tui.cli.output import (
    EXIT_API,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_TASK_FAILED,
    CommandError,
    Console,
    image_files,
)
from kling_tui.cli.session import Session, open_session, out_dir, save_and_copy
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.budget import SlotBudget
from kling_tui.work.references import ImageRefError, resolve_image
from kling_tui.work.spending import over_budget, spent_today

# Columns that are about the row, not fields of the request.
ID_COLUMN = "id"
KIND_COLUMNS = ("kind", "endpoint")
NOTE_COLUMN = "note"
DONE = ("succeed", "failed")
RUNNING = ("submitted", "processing")
UNSENT = ("queued", "not_created")  # safe to send (again): the server holds no task for them
SENDS = ("new", "send", "send again")  # plans that send a create
MAX_ROWS = 100_000
BUSY = 1303
SAVE_ATTEMPTS = 3
SAVE_BACKOFF = 0.5  # seconds, times the attempt number


@dataclass
class Row:
    line: int
    raw: dict[str, Any]
    id: str | None = None
    kind: str = "generation"
    note: str | None = None
    request: Request | None = None
    external_task_id: str = ""
    problems: list[str] = field(default_factory=list)
    record: TaskRecord | None = None  # the row's task in history, once known
    images_missing: bool = False  # --wait: the task succeeded but its images could not be saved

    @property
    def valid(self) -> bool:
        return not self.problems

    def plan(self) -> str:
        """What this run does with the row."""
        if not self.valid:
            return "invalid"
        if self.record is None:
            return "new"
        status = self.record.status
        if status in DONE:
            return "done"
        if status in RUNNING:
            return "running"
        if status == "pending":
            return "look up"
        return "send again" if status == "not_created" else "send"


# -- reading the file --------------------------------------------------------------------


def read_rows(path: Path) -> list[Row]:
    """Rows with their line numbers; a line that is not a row at all becomes a row with a problem."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CommandError(f"FILE: {plain(path)} not found", EXIT_INVALID) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"FILE: cannot read {plain(path)}: {plain(exc)}", EXIT_INVALID) from None
    rows = list(_csv_rows(text) if path.suffix.lower() == ".csv" else _jsonl_rows(text))
    if len(rows) > MAX_ROWS:
        raise CommandError(f"FILE: {len(rows)} rows; at most {MAX_ROWS} in one file", EXIT_INVALID)
    return rows


def _jsonl_rows(text: str) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(number, {}, problems=[f"not valid JSON: {exc.msg} (column {exc.colno})"])
            continue
        if not isinstance(data, dict):
            yield Row(number, {}, problems=["must be a JSON object of request fields"])
            continue
        yield Row(number, {str(k): v for k, v in data.items() if v is not None and v != ""})


def _csv_rows(text: str) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return
    line = reader.line_num
    for data in reader:
        start, line = line + 1, reader.line_num
        extra = data.pop(None, None)  # DictReader puts surplus cells under None
        raw = {k.strip(): v.strip() for k, v in data.items() if k and isinstance(v, str) and v.strip()}
        if not raw and not extra:
            continue
        row = Row(start, raw)
        if extra:
            row.problems.append(f"{len(extra)} more cells than the header has columns")
        yield row


# -- understanding a row -----------------------------------------------------------------


def _kind_of(value: Any) -> str | None:
    text = str(value).strip().lower()
    for kind, path in PATHS.items():
        if text in (kind, path, path.rsplit("/", 1)[-1]):
            return kind
    return None


def _field_names(request: Request) -> set[str]:
    return {f.name for f in dataclasses.fields(request) if f.init and f.name not in NOT_PARAMS}


def _build(kind: str, params: dict[str, Any]) -> tuple[Request | None, list[str]]:
    """The request for `kind` from the row's fields, values converted to the fields' types."""
    try:
        request = request_from_params(kind, params)
    except TypeError as exc:
        missing = [part for part in str(exc).split("'")[1::2] if part.isidentifier()]
        return None, [f"{name}: required" for name in missing] or [f"not a {kind} request: {exc}"]
    problems = [f"{name}: not a field of {kind} requests" for name in sorted(set(params) - _field_names(request))]
    hints = typing.get_type_hints(type(request))
    for name in _field_names(request) & set(params):
        value = getattr(request, name)
        if isinstance(value, str):
            try:
                setattr(request, name, _convert(hints.get(name, str), value))
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    return request, problems


def _convert(hint: Any, text: str) -> Any:
    """A CSV cell (or a JSON string) as the type the request field has."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    origin = {typing.get_origin(o) or o for o in options}
    if str in origin:
        return text
    if list in origin:
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("must be a JSON array or values separated by |") from None
            if isinstance(value, list):
                return [str(v) for v in value]
            raise ValueError("must be a JSON array or values separated by |")
        return [part.strip() for part in text.split("|") if part.strip()]
    if bool in origin:
        lowered = text.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise ValueError("must be true or false")
    if int in origin:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"must be a whole number (got {text!r})") from None
    if float in origin:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"must be a number (got {text!r})") from None
    return text


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def understand(row: Row, default_kind: str | None) -> None:
    """Fill in the row's kind, id, note and request, or its problems."""
    if row.problems:
        return
    params = dict(row.raw)
    row_id = params.pop(ID_COLUMN, None)
    if row_id is not None:
        row.id = str(row_id).strip() or None
    note = params.pop(NOTE_COLUMN, None)
    row.note = str(note) if note is not None else None
    kinds = [params.pop(c) for c in KIND_COLUMNS if c in params]
    if "external_task_id" in params:
        params.pop("external_task_id")
        row.problems.append("external_task_id: set by batch from the file and the row; name rows with the id column")
    if kinds:
        kind = _kind_of(kinds[0])
        if kind is None:
            row.problems.append(f"kind: must be one of {', '.join(PATHS)} (got {plain(kinds[0])})")
            return
        candidates = [kind]
    elif default_kind:
        candidates = [default_kind]
    else:
        candidates = list(PATHS)  # the first endpoint whose fields cover the row's columns
    best: tuple[Request | None, list[str]] | None = None
    for kind in candidates:
        request, problems = _build(kind, params)
        if request is not None and not any("not a field" in p for p in problems):
            row.kind, best = kind, (request, problems)
            break
        if best is None:
            row.kind, best = kind, (request, problems)
    assert best is not None
    row.request, problems = best
    row.problems.extend(problems)


def external_id(file_key: str, row: Row, occurrence: int) -> str:
    """Stable across runs of the same file: from the row's id, else its content."""
    if row.id is not None:
        basis = f"{file_key}\0id\0{row.id}"
    else:
        basis = f"{file_key}\0row\0{_canonical(row.raw)}\0{occurrence}"
    return "batch-" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:32]


def _canonical(raw: dict[str, Any]) -> str:
    return json.dumps({k: str(v) if not isinstance(v, (list, dict)) else v for k, v in raw.items()}, sort_keys=True)


def _resolve_images(store: HistoryStore, row: Row) -> None:
    """Image fields may name an image of a past task, TASK[:INDEX], as on the command line."""
    request = row.request
    assert request is not None
    parents: list[Parent] = []
    for name in sorted(_field_names(request)):
        value = getattr(request, name)
        if "image" not in name or not value:
            continue
        resolved = []
        for item in value if isinstance(value, list) else [value]:
            try:
                found = resolve_image(store, str(item))
            except ImageRefError as exc:
                row.problems.append(f"{name}: {exc}")
                continue
            resolved.append(found.source)
            if found.parent is not None and found.parent not in parents:
                parents.append(found.parent)
        setattr(request, name, resolved if isinstance(value, list) else (resolved or [value])[0])
    request.parents = parents


def prepare(path: Path, store: HistoryStore, settings: Settings, default_kind: str | None) -> list[Row]:
    """Read, check and name every row, and find the ones already in history."""
    rows = read_rows(path)
    file_key = hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()
    caps = settings.capabilities()
    seen_ids: dict[str, int] = {}
    occurrences: Counter[str] = Counter()
    for row in rows:
        understand(row, default_kind)
        if row.id is not None:
            if row.id in seen_ids:
                row.problems.append(f"id: {plain(row.id)} is also the id of line {seen_ids[row.id]}")
            seen_ids.setdefault(row.id, row.line)
        canonical = _canonical(row.raw)
        row.external_task_id = external_id(file_key, row, occurrences[canonical])
        occurrences[canonical] += 1
        if row.request is not None and not row.problems:
            _resolve_images(store, row)
        if row.request is not None and not row.problems:
            row.request.external_task_id = row.external_task_id
            try:
                row.request.build(caps)  # every rule, and reads local images
            except InvalidRequest as exc:
                row.problems.extend(f"{p.field}: {p.rule}" for p in exc.problems)
            row.request.external_task_id = row.external_task_id
        row.record = store.find_by_external_id(row.external_task_id)
    return rows


# -- output ------------------------------------------------------------------------------


def _row_json(store: HistoryStore, row: Row, **extra: Any) -> dict[str, Any]:
    record = row.record
    data: dict[str, Any] = {"line": row.line, "id": row.id, "kind": row.kind, "external_task_id": row.external_task_id}
    if record is not None:
        data.update(
            local_id=record.local_id,
            status=record.status,
            status_msg=record.status_msg,
            task_id=record.task_id,
            images=[str(p) for p in image_files(store, record)],
        )
    if row.problems:
        data["problems"] = list(row.problems)
    data.update(extra)
    return data


class Progress:
    """One line on a terminal's stderr, redrawn in place; silent elsewhere."""

    WIDTH = 30

    def __init__(self, console: Console, total: int, goal: str) -> None:
        self.console = console
        self.total = total
        self.goal = goal
        self.shown = console.interactive and total > 0

    def draw(self, done: int, failed: int) -> None:
        if not self.shown:
            return
        filled = int(self.WIDTH * done / self.total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        tail = f", {failed} not done" if failed else ""
        print(f"\r[{bar}] {done}/{self.total} {self.goal}{tail} ", end="", file=self.console.stderr, flush=True)

    def end(self) -> None:
        if self.shown:
            print(file=self.console.stderr, flush=True)


# -- the command -------------------------------------------------------------------------


async def cmd_batch(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    if args.out and not args.wait:
        raise CommandError(
            "--out: only works with --wait (the images exist once the tasks have succeeded)", EXIT_INVALID
        )
    path = Path(os.path.expanduser(args.file))
    if args.kind is not None:
        kind = _kind_of(args.kind)
        if kind is None:
            raise CommandError(f"--kind: must be one of {', '.join(PATHS)} (got {plain(args.kind)})", EXIT_INVALID)
        args.kind = kind
    if args.dry_run:
        return await _batch(args, path, settings, store, console)
    with _one_run_per_file(path):  # from the first look at history to the last send
        return await _batch(args, path, settings, store, console)


async def _batch(
    args: argparse.Namespace, path: Path, settings: Settings, store: HistoryStore, console: Console
) -> int:
    rows = await asyncio.to_thread(prepare, path, store, settings, args.kind)
    invalid = [row for row in rows if not row.valid]
    for row in invalid:
        console.error(f"{plain(path.name)}:{row.line}: " + "; ".join(plain(p) for p in row.problems))
    if args.dry_run:
        return _dry_run(rows, store, settings, console, invalid)
    if invalid and args.strict:
        raise CommandError(f"{len(invalid)} rows break a rule (see above); --strict: nothing was sent", EXIT_INVALID)
    out = out_dir(args.out)
    valid = [row for row in rows if row.valid]
    if settings.budget_daily is not None or settings.budget_session is not None:
        to_send = [row.request for row in valid if row.request is not None and row.plan() in SENDS]
        estimate = _estimate(to_send, settings)
        spent = await asyncio.to_thread(spent_today, store, settings.capabilities())
        overruns = over_budget(settings, estimate, today=spent, session=0.0)  # a command is a session
        if overruns and not args.yes:
            raise CommandError(
                f"not sent: {'; '.join(str(o) for o in overruns)} (add --yes to send anyway)", EXIT_INVALID
            )
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        if valid:
            session.require_credentials(settings)
            code = await _run(
                session,
                valid,
                console,
                wait=args.wait,
                out=out,
                group=path_group(path),
                concurrency=settings.concurrency,
            )
        else:
            code = EXIT_OK
    for row in invalid:
        if console.as_json:
            console.json(_row_json(store, row, outcome="invalid"))
    return EXIT_INVALID if invalid else code


@contextlib.contextmanager
def _one_run_per_file(path: Path) -> Iterator[None]:
    """Two runs of one file at once would both send the rows still queued: the second waits for none."""
    try:
        import fcntl
    except ImportError:  # not on this platform: no lock
        yield
        return
    lock_path = data_dir() / f"batch-{path_group(path)}.lock"
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CommandError(
                f"FILE: another kling-tui batch is running {plain(path.name)}; run it again when that one ends",
                EXIT_INVALID,
            ) from None
        yield


def path_group(path: Path) -> str:
    """The group a file's tasks share in the table: the same for every run of the file."""
    return hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:8]


def _estimate(requests: list[Request], settings: Settings) -> float:
    """Units by the price table, as variants.estimate_units counts them, for every endpoint."""
    caps = settings.capabilities()
    return sum(price(caps, request.kind, request.params()).units for request in requests)


def _dry_run(rows: list[Row], store: HistoryStore, settings: Settings, console: Console, invalid: list[Row]) -> int:
    to_send = [row for row in rows if row.valid and row.plan() in SENDS]
    requests = [row.request for row in to_send if row.request is not None]
    units = _estimate(requests, settings)
    counts = Counter(row.plan() for row in rows)
    for row in rows:
        if console.as_json:
            console.json(_row_json(store, row, plan=row.plan()))
            continue
        request = row.request
        model = plain(getattr(request, "model_name", None) or "-")
        prompt = plain(" ".join(str(getattr(request, "prompt", None) or "").split()))
        prompt = prompt if len(prompt) <= 50 else prompt[:49] + "…"
        n = getattr(request, "n", None) or 1
        console.out(f"line {row.line:<5} {row.plan():<10} {row.kind:<10} {model:<13} n={n}  {prompt}")
    summary = {
        "rows": len(rows),
        "to_send": len(to_send),
        "images": sum(getattr(r, "n", None) or 1 for r in requests),
        "units_estimate": units,
        "plan": dict(counts),
    }
    if console.as_json:
        console.json({"summary": summary})
    else:
        parts = ", ".join(f"{count} {plan}" for plan, count in sorted(counts.items()))
        console.out(f"{len(rows)} rows ({parts}); {len(to_send)} to send, about {units:g} units; nothing was sent")
    return EXIT_INVALID if invalid else EXIT_OK


async def _run(
    session: Session,
    rows: list[Row],
    console: Console,
    *,
    wait: bool,
    out: Path | None,
    group: str,
    concurrency: int,
) -> int:
    workbench = session.workbench
    store = workbench.store
    workbench.budget = SlotBudget(concurrency)  # the pack's slots, as the TUI's queue uses them
    by_local_id: dict[str, Row] = {}
    finished: set[str] = set()
    all_done = asyncio.Event()

    def reached(record: TaskRecord) -> bool:
        if record.status == "not_created" and record.error_code == BUSY:
            return False  # the workbench queues it again at once
        return record.is_final if wait else record.status not in ("queued", "pending")

    progress = Progress(console, len(rows), "done" if wait else "sent")
    saving: list[asyncio.Task] = []

    def settle(row: Row, record: TaskRecord) -> None:
        row.record = record
        if record.local_id in finished:
            return
        finished.add(record.local_id)
        if wait and record.status == "succeed":
            saving.append(asyncio.create_task(_save(session, row, record, out, console)))
        elif console.as_json:
            console.json(_row_json(store, row, outcome=_outcome(record)))
        progress.draw(len(finished), sum(1 for r in rows if r.record and r.record.status in ("failed", "not_created")))
        if len(finished) == len(rows):
            all_done.set()

    def on_record(record: TaskRecord) -> None:
        row = by_local_id.get(record.local_id)
        if row is not None:
            row.record = record
            if reached(record):
                settle(row, record)

    workbench.subscribe(on_record)
    follower = asyncio.create_task(workbench.follow())
    try:
        for row in rows:
            await _start_row(session, row, by_local_id, group)
            if row.record is not None and reached(row.record):
                settle(row, row.record)
            if len(by_local_id) % 50 == 0:
                await asyncio.sleep(0)  # let sends and the tracker run while rows are recorded
        if rows:
            await all_done.wait()
        await asyncio.gather(*saving)
    finally:
        progress.end()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await workbench.aclose()
    return _exit_code(rows, wait)


async def _start_row(session: Session, row: Row, by_local_id: dict[str, Row], group: str) -> None:
    """Send a row that was never sent; look up one sent without an answer; follow one running."""
    workbench = session.workbench
    record = row.record
    if record is None:
        assert row.request is not None
        record = workbench.enqueue(row.request, group=group)
        by_local_id[record.local_id] = row
        if row.note:
            record = workbench.annotate(record.local_id, note=row.note)
        row.record = workbench.store.get(record.local_id) or record
        return
    if record.status == "pending":
        # Sent by a run that ended before the answer came: the server may hold it. Look it up
        # (before listening to the row: "not created" here is not the row's outcome).
        record = row.record = await workbench.confirm(record)
    by_local_id[record.local_id] = row
    if record.status in UNSENT:
        # The server holds no task under this external_task_id: queue the same record again.
        record = workbench.store.update(
            record.local_id, status="queued", status_msg="", error_code=None, owner=workbench.owner
        )
        row.record = record
        workbench.queue.append(record.local_id)
        workbench.pump()
        row.record = workbench.store.get(record.local_id) or record
    elif record.status in RUNNING and record.task_id:
        row.record = workbench.annotate(record.local_id)  # counts its slots and tells the listeners
        workbench.tracker.track(record.task_id, record.kind, record.status)


async def _save(session: Session, row: Row, record: TaskRecord, out: Path | None, console: Console) -> None:
    outcome = "images not saved"
    for attempt in range(SAVE_ATTEMPTS):
        try:
            record, _ = await save_and_copy(session, record, out)
        except CommandError as exc:
            # A dropped connection mid-download: the next attempt fetches only what is missing.
            if attempt + 1 == SAVE_ATTEMPTS:
                console.warn(f"line {row.line}: {exc.message}")
                row.images_missing = True
            else:
                await asyncio.sleep(SAVE_BACKOFF * (attempt + 1))
            continue
        row.record = record
        outcome = _outcome(record)
        break
    if console.as_json:
        console.json(_row_json(session.workbench.store, row, outcome=outcome))


def _outcome(record: TaskRecord) -> str:
    if record.status == "not_created":
        return "not created"
    return record.status


def _exit_code(rows: list[Row], wait: bool) -> int:
    statuses = [row.record.status if row.record else "pending" for row in rows]
    if any(s in ("not_created", "pending", "queued", "error") for s in statuses) or any(r.images_missing for r in rows):
        return EXIT_API
    if wait and any(s == "failed" for s in statuses):
        return EXIT_TASK_FAILED
    return EXIT_OK
