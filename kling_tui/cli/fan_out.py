"""A create command whose prompt is a template (`--var`, `--zip`): every filling checked and
estimated before anything is sent, then sent as one variant group.

Output is one record per task (one JSON object a line with --json). Exit codes as for one
task: 2 nothing was sent, 3 a task was not created or could not be followed, 4 a task failed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping, Sequence

from kling_tui.api.errors import InvalidRequest, Problem
from kling_tui.api.prices import describe
from kling_tui.api.validation import images_made
from kling_tui.cli.output import EXIT_API, EXIT_INVALID, EXIT_OK, CommandError, Console, emit_images, emit_record
from kling_tui.cli.session import check_finished, open_session, save_and_copy, wait_until_all_final
from kling_tui.cli.submit import check_budget, invalid, out_dir_for, submit_one, submit_request, warn_retiring
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.variants import (
    FanOut,
    Request,
    check_fan_out,
    estimate_units,
    expand,
    fan_out_problems,
    new_group,
    variant_label,
)


def variables(args: argparse.Namespace) -> dict[str, list[str]]:
    """--var NAME=A,B, repeatable; a name given twice gets the values of both."""
    found: dict[str, list[str]] = {}
    for name, values in getattr(args, "var", None) or []:
        found.setdefault(name, []).extend(values)
    return found


async def submit_templated(
    args: argparse.Namespace,
    settings: Settings,
    store: HistoryStore,
    console: Console,
    request: Request,
    options: Mapping[str, str],
) -> int:
    fan = FanOut(variables=variables(args), zipped=bool(getattr(args, "zip", False)))
    found = fan_out_problems(request, fan)
    if found:
        raise invalid(InvalidRequest(found), {**options, **{p.field: "--var" for p in found if p.field != "prompt"}})
    requests = expand(request, fan)
    if len(requests) == 1:
        return await submit_request(args, settings, store, console, requests[0], options)
    if request.external_task_id:
        raise CommandError(
            f"external_task_id (--external-task-id): names one task, and the template makes {len(requests)}",
            EXIT_INVALID,
        )
    return await _submit_all(args, settings, store, console, requests, options)


async def _submit_all(
    args: argparse.Namespace,
    settings: Settings,
    store: HistoryStore,
    console: Console,
    requests: Sequence[Request],
    options: Mapping[str, str],
) -> int:
    caps = settings.capabilities()
    broken = await asyncio.to_thread(check_fan_out, requests, caps)  # reads local images once
    if broken:
        problems = [Problem(p.field, f"{p.rule} [{variant_label(n, requests[n - 1])}]", p.code) for n, p in broken]
        raise invalid(InvalidRequest(problems), options)
    out = out_dir_for(args)
    warn_retiring(args, caps, console, [r.model_name for r in requests])
    units = estimate_units(requests, caps)
    images = sum(images_made(r.kind, r.params()) for r in requests)
    console.progress(f"estimate: ≈ {describe(units, caps)} for {len(requests)} tasks, {images} images")
    await check_budget(args, settings, store, units)
    patience = float(getattr(args, "max_wait", None) or 1800.0)
    deadline = time.monotonic() + patience
    group = new_group()
    records: list[TaskRecord] = []
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        session.require_credentials(settings)
        for request in requests:
            left = max(1.0, deadline - time.monotonic())
            try:
                record = await submit_one(session, request, left, console, group)
            except InvalidRequest as exc:
                raise invalid(exc, options) from None
            if record.status == "not_created":
                console.warn(f"{record.local_id} was not created: {record.status_msg}")
            else:
                console.progress(f"{record.local_id}: {record.status} (task {record.task_id or '-'})")
            records.append(record)
        codes = [_code(record) for record in records]
        if not args.wait:
            for record in records:
                emit_record(console, store, record)
            return max(codes)
        left = max(1.0, deadline - time.monotonic())
        records = await wait_until_all_final(session, records, console, patience=left, max_wait=patience)
        codes = []
        for record in records:
            try:
                check_finished(record)
                record, copies = await save_and_copy(session, record, out)
            except CommandError as exc:  # one task's end is not the others'
                console.error(exc.message)
                emit_record(console, store, exc.record or record)
                codes.append(exc.exit_code)
                continue
            emit_images(console, store, record, copies)
            codes.append(EXIT_OK)
    return max(codes)


def _code(record: TaskRecord) -> int:
    return EXIT_API if record.status in ("not_created", "pending", "queued", "error") else EXIT_OK
