"""`kling-tui generate`: create a task (recorded before it is sent), optionally wait and save its images."""

from __future__ import annotations

import argparse
import asyncio
import time

from kling_tui.api.errors import InvalidRequest
from kling_tui.api.types import GenerationRequest
from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_API, EXIT_INVALID, EXIT_OK, CommandError, Console, emit_images, emit_record
from kling_tui.cli.session import (
    Session,
    check_finished,
    invalid_input,
    open_session,
    out_dir,
    save_and_copy,
    wait_until_final,
)
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.workbench import WAITING_FOR_SLOT, span

SLOT_PROGRESS_EVERY = 10.0  # seconds between "waiting for a free slot" lines


async def _submit(session: Session, request: GenerationRequest, patience: float, console: Console) -> TaskRecord:
    """Record and send the task; while the server answers 1303 it waits in the queue for a
    free slot (progress on a terminal), at most `patience` seconds in all."""
    workbench = session.workbench
    started = time.monotonic()
    shown_at: float | None = None

    def on_record(changed: TaskRecord) -> None:
        nonlocal shown_at
        if changed.status != "queued" or changed.status_msg != WAITING_FOR_SLOT:
            return
        now = time.monotonic()
        if shown_at is not None and now - shown_at < SLOT_PROGRESS_EVERY:
            return
        shown_at = now
        console.progress(
            f"{changed.local_id}: waiting for a free slot (1303: all of the account's slots are in use); "
            f"{span(round(now - started))} of {span(patience)} (--max-wait)"
        )

    workbench.subscribe(on_record)
    try:
        return await workbench.submit(request, patience=patience)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Interrupted (Ctrl-C) before a slot was free: not created, and history says so.
        for local_id in list(workbench.queue):
            workbench.cancel(local_id, "the command was interrupted before it was sent")
        raise


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
        raise invalid_input(exc) from None
    if args.external_task_id:
        used = store.find_by_external_id(args.external_task_id)
        if used is not None:
            raise CommandError(
                f"external_task_id (--external-task-id): already used by task {used.local_id}; it must be unique",
                EXIT_INVALID,
            )
    if args.out and not args.wait:
        raise CommandError("--out: only works with --wait (the images exist once the task has succeeded)", EXIT_INVALID)
    out = out_dir(args.out)
    patience = float(getattr(args, "max_wait", None) or 1800.0)
    started = time.monotonic()
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        session.require_credentials(settings)
        try:
            record = await _submit(session, request, patience, console)  # recorded before it is sent
        except InvalidRequest as exc:
            raise invalid_input(exc) from None
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
            emit_record(console, store, record)
            return EXIT_OK
        left = max(1.0, patience - (time.monotonic() - started))
        record = await wait_until_final(session, record, console, patience=left, max_wait=patience)
        check_finished(record)
        record, copies = await save_and_copy(session, record, out)
    emit_images(console, store, record, copies)
    return EXIT_OK
