"""`kling-tui show` and `kling-tui download`: one task, refreshed from the server while it runs."""

from __future__ import annotations

import argparse

from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_OK, Console, emit_images, emit_record
from kling_tui.cli.session import check_finished, find_record, open_session, out_dir, refresh, save_and_copy
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore, TaskRecord


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
    emit_record(console, store, record)
    if not console.as_json:
        for line in lineage_lines(record):
            console.out(line)
    return EXIT_OK


def lineage_lines(record: TaskRecord) -> list[str]:
    """Where the task's input images came from: "made from: <local id> image 2"."""
    return [
        f"{'re-run of:':<13}{plain(p['local_id'])}"
        if p["image"] == 0  # image 0: the task itself, re-run on another model
        else f"{'made from:':<13}{plain(p['local_id'])} image {p['image']}"
        for p in record.parents
    ]


async def cmd_download(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    record = find_record(store, args.task_id)
    out = out_dir(args.out)
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        if record.is_active:
            record = await refresh(session, record)
        check_finished(record)
        record, copies = await save_and_copy(session, record, out)
    emit_images(console, store, record, copies)
    return EXIT_OK
