"""`kling-tui list` and `kling-tui export`: the history as a table, JSON, JSONL or CSV."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from pathlib import Path

from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_INVALID, EXIT_OK, CommandError, Console, dumps, record_json
from kling_tui.history.index import search_terms
from kling_tui.history.store import HistoryStore, TaskRecord

CSV_COLUMNS = (
    "local_id",
    "created_at",
    "kind",
    "status",
    "status_msg",
    "model",
    "prompt",
    "n",
    "aspect_ratio",
    "task_id",
    "external_task_id",
    "units",
    "error_code",
    "finished_at",
    "image_urls",
    "images",
    "params",
    "parents",
)


EXPORT_BATCH = 500


def cmd_list(args: argparse.Namespace, store: HistoryStore, console: Console) -> int:
    if args.limit < 1:
        raise CommandError("--limit: must be at least 1", EXIT_INVALID)
    words = getattr(args, "search", None)
    if words is not None and not search_terms(words):
        raise CommandError("--search: give at least one word (letters or digits)", EXIT_INVALID)
    rows = store.recent(limit=args.limit, words=words)
    if console.as_json:
        records = (store.get(row.local_id) for row in rows)
        console.json([record_json(store, r) for r in records if r is not None])
        return EXIT_OK
    for row in rows:
        prompt = plain(row.prompt)
        if len(prompt) > 60:
            prompt = prompt[:59] + "…"
        console.out(f"{row.local_id}  {plain(row.status):<11} {plain(row.model or '-'):<13} n={row.n}  {prompt}")
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
    if args.format == "html":
        from kling_tui.cli.contact_sheet import write_contact_sheet

        if not args.out:
            raise CommandError("--format html needs --out DIR", EXIT_INVALID)
        out = Path(args.out).expanduser()
        try:
            index = write_contact_sheet(_all_records(store), store, out)
        except OSError as exc:
            raise CommandError(
                f"cannot write the contact sheet to {plain(out)}: {exc.strerror or exc}", EXIT_INVALID
            ) from None
        console.out(str(index))
        return EXIT_OK
    if getattr(args, "out", None):
        raise CommandError("--out is for --format html; jsonl and csv go to stdout", EXIT_INVALID)
    if args.format == "jsonl":
        for record in _all_records(store):
            console.out(dumps(record_json(store, record)))
        return EXIT_OK
    writer = csv.writer(console.stdout)
    writer.writerow(CSV_COLUMNS)
    for record in _all_records(store):
        data = record_json(store, record)
        data["image_urls"] = " ".join(data["image_urls"])
        data["images"] = " ".join(data["images"])
        data["params"] = dumps(data["params"])
        data["parents"] = " ".join(f"{p['local_id']}:{p['image']}" for p in data["parents"])
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
