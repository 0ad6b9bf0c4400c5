"""The create-and-wait flow that `omni`, `expand` and `multi` share: check, record, send, wait, save.

The same steps and exit codes as `generate`: 2 when the input breaks a rule (nothing is sent),
3 when the API or the network fails, 4 when the task fails.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Mapping

from kling_tui.api.errors import InvalidRequest
from kling_tui.api.types import Parent, Request
from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_API, EXIT_INVALID, EXIT_OK, CommandError, Console, emit_images, emit_record
from kling_tui.cli.session import check_finished, open_session, out_dir, save_and_copy, wait_until_final
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore
from kling_tui.work.references import ImageInput, ImageRefError, resolve_image


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
        parts.append(f"{problem.field} ({option}): {problem.rule}" if option else str(problem))
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
    if args.out and not args.wait:
        raise CommandError("--out: only works with --wait (the images exist once the task has succeeded)", EXIT_INVALID)
    out = out_dir(args.out)
    async with open_session(settings, store, sandbox=args.sandbox) as session:
        session.require_credentials(settings)
        try:
            record = await session.workbench.submit(request)  # recorded before it is sent
        except InvalidRequest as exc:
            raise invalid(exc, options) from None
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
        record = await wait_until_final(session, record, console)
        check_finished(record)
        record, copies = await save_and_copy(session, record, out)
    emit_images(console, store, record, copies)
    return EXIT_OK
