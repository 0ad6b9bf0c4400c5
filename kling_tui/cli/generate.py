"""`kling-tui generate`: create a task (recorded before it is sent), optionally wait and save its images."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import Any

from kling_tui.api.capabilities import Capabilities, discontinued_model
from kling_tui.api.errors import InvalidRequest
from kling_tui.api.prices import Price, describe
from kling_tui.api.types import GenerationRequest
from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_API, EXIT_INVALID, EXIT_OK, CommandError, Console, emit_images, emit_record
from kling_tui.cli.session import check_finished, invalid_input, open_session, out_dir, save_and_copy, wait_until_final
from kling_tui.config import Settings
from kling_tui.history.retired import load_retired, remember_retired
from kling_tui.history.store import HistoryStore
from kling_tui.work.spending import over_budget, spent_today
from kling_tui.work.variants import request_price


async def cmd_generate(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    caps = settings.capabilities()
    remembered = load_retired(sandbox=args.sandbox)
    today = dt.date.today()
    request = GenerationRequest(
        prompt=args.prompt,
        # Like the form: the first model of the preference list the table and the service still serve.
        model_name=args.model or caps.preferred_model(today, frozenset(remembered)),
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
    notice = caps.retirement_notice(request.model_name, today, {n: r.since for n, r in remembered.items()})
    if notice:
        console.warn(plain(notice))
    estimate = request_price(request, caps)
    console.progress(f"estimate: ≈ {describe(estimate.units, caps)} for {_what(estimate)}")
    extra = {"estimate": estimate_json(estimate, caps)}
    if settings.budget_daily is not None or settings.budget_session is not None:
        spent = await asyncio.to_thread(spent_today, store, caps)
        overruns = over_budget(settings, estimate.units, today=spent, session=0.0)  # a command is a session
        if overruns and not args.yes:
            raise CommandError(
                f"not sent: {'; '.join(str(o) for o in overruns)} (add --yes to send anyway)", EXIT_INVALID
            )
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        session.require_credentials(settings)
        try:
            record = await session.workbench.submit(request)  # recorded before it is sent
        except InvalidRequest as exc:
            raise invalid_input(exc) from None
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
        record = await wait_until_final(session, record, console)
        check_finished(record)
        record, copies = await save_and_copy(session, record, out)
    emit_images(console, store, record, copies, extra)
    return EXIT_OK


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
