"""What the headless commands print: exit codes, the console (stdout for results, stderr for the rest),
and a task as JSON or as lines."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from kling_tui.api.errors import Problem
from kling_tui.base.textsafe import plain
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.templates import describe_values

EXIT_OK = 0


EXIT_INVALID = 2  # bad input; nothing was sent


EXIT_API = 3  # the API or the network failed


EXIT_TASK_FAILED = 4  # the task ended as "failed"


EXIT_STORAGE = 5  # the history or data folder cannot be written (read-only, full)


EXIT_INTERRUPTED = 130


EXIT_BROKEN_PIPE = 141

# Wire field -> the option that sets it, so a message names what the user typed.


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
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def image_files(store: HistoryStore, record: TaskRecord) -> list[Path]:
    return store.image_files(record)


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
        "parents": [dict(parent) for parent in record.parents],  # lineage: {"local_id", "image"}
        "template": (
            {"body": record.template, "values": dict(record.template_values)} if record.template is not None else None
        ),
    }


def dumps(value: Any) -> str:
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
        print(dumps(value), file=self.stdout)

    # Messages may quote history or server text (a status edited into task.toml, say); escaping
    # here as well keeps any that a caller forgot from acting on the terminal.
    def progress(self, message: str) -> None:
        if self.interactive:
            print(plain(message, keep_newlines=True), file=self.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"kling-tui: warning: {plain(message, keep_newlines=True)}", file=self.stderr)

    def error(self, message: str) -> None:
        print(f"kling-tui: error: {plain(message, keep_newlines=True)}", file=self.stderr)


def _record_lines(store: HistoryStore, record: TaskRecord) -> Iterator[str]:
    fields = [
        ("local id", record.local_id),
        ("task id", record.task_id or "-"),
        ("external id", record.external_task_id),
        ("status", record.status),
        ("message", record.status_msg),
        ("model", record.model or "-"),
        ("prompt", record.prompt),
        ("template", record.template),
        ("values", describe_values(record.template_values.items())),
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


def emit_record(console: Console, store: HistoryStore, record: TaskRecord, extra: dict[str, Any] | None = None) -> None:
    if console.as_json:
        console.json({**record_json(store, record), **(extra or {})})
    else:
        for line in _record_lines(store, record):
            console.out(line)


def emit_images(
    console: Console, store: HistoryStore, record: TaskRecord, copies: list[Path], extra: dict[str, Any] | None = None
) -> None:
    """The saved images: the --out copies when there are, else the files in the history."""
    if console.as_json:
        data = {**record_json(store, record), **(extra or {})}
        data["copies"] = [str(p) for p in copies]
        console.json(data)
        return
    for path in copies or image_files(store, record):
        console.out(plain(path))


# -- entry --------------------------------------------------------------------------------


def report(console: Console, store: HistoryStore | None, error: CommandError) -> None:
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
