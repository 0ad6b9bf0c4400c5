"""The create-and-wait flow every create command shares (`generate`, `omni`, `expand`, `multi`):
check, warn, estimate, record, send, wait for a slot and for the task, save.

Exit codes: 2 when the input breaks a rule or would pass the budget (nothing is sent), 3 when
the API or the network fails or --max-wait runs out, 4 when the task fails.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kling_tui.api.capabilities import Capabilities, discontinued_model
from kling_tui.api.errors import InvalidRequest
from kling_tui.api.prices import Price, describe
from kling_tui.api.types import Parent, Request
from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_API, EXIT_INVALID, EXIT_OK, CommandError, Console, emit_images, emit_record
from kling_tui.cli.session import Session, check_finished, open_session, out_dir, save_and_copy, wait_until_final
from kling_tui.config import Settings
from kling_tui.history.retired import load_retired, remember_retired
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.references import ImageInput, ImageRefError, resolve_image
from kling_tui.work.spending import over_budget, spent_today
from kling_tui.work.variants import request_price
from kling_tui.work.workbench import WAITING_FOR_SLOT, span


def resolve_inputs(store: HistoryStore, option: str, values: Iterable[str]) -> list[ImageInput]:
    """Each PATH, URL or TASK[:INDEX] given to `option`; a task that names no usable image is exit 2."""
    found = []
    for value in values:
        try:
            found.append(resolve_image(store, value))
        except ImageRefError as exc:
            raise CommandError(f"{option}: {plain(exc)}", EXIT_INVALID) from None
    return found


def parents_of(inputs: Iterable[ImageInput | None]) -> list[Parent]:
    """The lineage to record: every history image among the inputs, once each, in order."""
    return list(dict.fromkeys(i.parent for i in inputs if i is not None and i.parent is not None))


def invalid(exc: InvalidRequest, options: Mapping[str, str]) -> CommandError:
    """The rules a request broke, each naming the field and the option that sets it."""
    parts = []
    for problem in exc.problems:
        option = options.get(problem.field.split("[", 1)[0])
        name = f"{problem.field} ({option})" if option and option != problem.field else problem.field
        parts.append(f"{name}: {problem.rule}")
    return CommandError("invalid request, nothing was sent: " + "; ".join(parts), EXIT_INVALID, problems=exc.problems)


async def submit_request(
    args: argparse.Namespace,
    settings: Settings,
    store: HistoryStore,
    console: Console,
    request: Request,
    options: Mapping[str, str],
) -> int:
    caps = settings.capabilities()
    try:
        await asyncio.to_thread(request.build, caps)  # reads and checks local images
    except InvalidRequest as exc:
        raise invalid(exc, options) from None
    warnings = getattr(request, "warnings", None)
    for warning in warnings() if warnings else []:
        console.warn(plain(warning))
    if request.external_task_id:
        used = store.find_by_external_id(request.external_task_id)
        if used is not None:
            raise CommandError(
                f"external_task_id (--external-task-id): already used by task {used.local_id}; it must be unique",
                EXIT_INVALID,
            )
    out = out_dir_for(args)
    warn_retiring(args, caps, console, [getattr(request, "model_name", None)])
    estimate = request_price(request, caps)
    console.progress(f"estimate: ≈ {describe(estimate.units, caps)} for {_what(estimate)}")
    extra = {"estimate": estimate_json(estimate, caps)}
    await check_budget(args, settings, store, estimate.units)
    patience = float(getattr(args, "max_wait", None) or 1800.0)
    started = time.monotonic()
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        session.require_credentials(settings)
        try:
            record = await submit_one(session, request, patience, console)  # recorded before it is sent
        except InvalidRequest as exc:
            raise invalid(exc, options) from None
        if record.status == "not_created":
            _remember_discontinued(record.status_msg, caps, console, sandbox=args.sandbox)
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
            emit_record(console, store, record, extra)
            return EXIT_OK
        left = max(1.0, patience - (time.monotonic() - started))
        record = await wait_until_final(session, record, console, patience=left, max_wait=patience)
        check_finished(record)
        record, copies = await save_and_copy(session, record, out)
    emit_images(console, store, record, copies, extra)
    return EXIT_OK


def out_dir_for(args: argparse.Namespace) -> Path | None:
    if args.out and not args.wait:
        raise CommandError("--out: only works with --wait (the images exist once the task has succeeded)", EXIT_INVALID)
    return out_dir(args.out)


def warn_retiring(args: argparse.Namespace, caps: Capabilities, console: Console, models: Iterable[str | None]) -> None:
    """A warning per model that has retired or retires within 30 days."""
    remembered = load_retired(sandbox=args.sandbox)
    for name in dict.fromkeys(models):
        notice = caps.retirement_notice(name, dt.date.today(), {n: r.since for n, r in remembered.items()})
        if notice:
            console.warn(plain(notice))


async def check_budget(args: argparse.Namespace, settings: Settings, store: HistoryStore, units: float) -> None:
    """Exit 2 when `units` would pass the config's [budget], unless --yes."""
    if settings.budget_daily is None and settings.budget_session is None:
        return
    spent = await asyncio.to_thread(spent_today, store, settings.capabilities())
    overruns = over_budget(settings, units, today=spent, session=0.0)  # a command is a session
    if overruns and not args.yes:
        raise CommandError(f"not sent: {'; '.join(str(o) for o in overruns)} (add --yes to send anyway)", EXIT_INVALID)


SLOT_PROGRESS_EVERY = 10.0  # seconds between "waiting for a free slot" lines


async def submit_one(
    session: Session, request: Request, patience: float, console: Console, group: str | None = None
) -> TaskRecord:
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
        return await workbench.submit(request, group, patience=patience)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Interrupted (Ctrl-C) before a slot was free: not created, and history says so.
        for local_id in list(workbench.queue):
            workbench.cancel(local_id, "the command was interrupted before it was sent")
        raise


def _what(estimate: Price) -> str:
    images = f"{estimate.images} image{'s' if estimate.images != 1 else ''}"
    return f"{images} on {estimate.model} ({estimate.use.replace('_', '-')} {estimate.resolution})"


def estimate_json(estimate: Price, caps: Capabilities) -> dict[str, Any]:
    """The estimate as --json shows it; the server's final_unit_deduction ("units") is the truth."""
    return {
        "units": estimate.units,
        "usd": round(caps.usd(estimate.units), 6),
        "model": estimate.model,
        "use": estimate.use,
        "resolution": estimate.resolution,
        "images": estimate.images,
        "is_estimate": True,
    }


def _remember_discontinued(message: str, caps: Capabilities, console: Console, *, sandbox: bool) -> None:
    """The service said a model is gone: remember it, and name what to use instead."""
    found = discontinued_model(message)
    if found is None:
        return
    name = plain(found)
    try:
        remember_retired(found, message, sandbox=sandbox)
    except OSError as exc:
        console.warn(f"could not remember that {name} is discontinued: {exc.strerror or exc}")
    model = caps.get(found)
    if model is not None and model.successor:
        console.warn(f"{name} is remembered as retired; to send it on its successor add: --model {model.successor}")
