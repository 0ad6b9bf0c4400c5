"""Runs one headless command (`generate`, `omni`, `expand`, `multi`, `list`, `show`, `download`,
`export`, `import`, `models`; a module each).

They run on the same core as the TUI (Workbench, HistoryStore), so a task a script creates
shows up in the TUI's history and the other way round. Results go to stdout (one JSON
object with --json; an array for `list`); errors, warnings and progress go to stderr, and
progress only when stderr is a terminal. Exit codes: see EXIT_*.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from kling_tui.api.auth import MissingCredentials
from kling_tui.api.errors import KlingError
from kling_tui.base.locations import StorageError, history_dir, is_storage_problem, storage_error
from kling_tui.base.logs import setup_logging
from kling_tui.base.textsafe import plain
from kling_tui.cli.batch import cmd_batch
from kling_tui.cli.expand import cmd_expand
from kling_tui.cli.export import cmd_export, cmd_list
from kling_tui.cli.generate import cmd_generate
from kling_tui.cli.models import cmd_models
from kling_tui.cli.multi import cmd_multi
from kling_tui.cli.omni import cmd_omni
from kling_tui.cli.output import (
    EXIT_API,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_STORAGE,
    CommandError,
    Console,
    report,
)
from kling_tui.cli.session import missing_credentials_message
from kling_tui.cli.show import cmd_download, cmd_show
from kling_tui.config import Settings, load_settings
from kling_tui.history.store import HistoryStore

log = logging.getLogger(__name__)


async def _dispatch(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    if args.command == "generate":
        return await cmd_generate(args, settings, store, console)
    if args.command == "omni":
        return await cmd_omni(args, settings, store, console)
    if args.command == "expand":
        return await cmd_expand(args, settings, store, console)
    if args.command == "multi":
        return await cmd_multi(args, settings, store, console)
    if args.command == "show":
        return await cmd_show(args, settings, store, console)
    if args.command == "download":
        return await cmd_download(args, settings, store, console)
    if args.command == "list":
        return cmd_list(args, store, console)
    if args.command == "export":
        return cmd_export(args, store, console)
    if args.command == "batch":
        return await cmd_batch(args, settings, store, console)
    if args.command == "models":
        return cmd_models(args, settings, console)
    if args.command == "import":
        from kling_tui.cli.import_image import cmd_import

        return cmd_import(args, console)
    raise ValueError(f"not a headless command: {args.command}")


async def _dispatch_until_history_fails(
    args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console
) -> int:
    """`_dispatch`, ended with the StorageError as soon as any write to history fails: also one
    in a background send or status update, which would otherwise leave the command waiting."""
    command = asyncio.current_task()
    loop = asyncio.get_running_loop()
    failures: list[StorageError] = []

    def write_failed(error: StorageError) -> None:
        failures.append(error)
        if command is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to stop
                loop.call_soon_threadsafe(command.cancel)

    def quiet_about_history(event_loop: asyncio.AbstractEventLoop, context: dict) -> None:
        # A background send that died of the same StorageError: reported once, by run().
        if isinstance(context.get("exception"), StorageError):
            log.info("background work stopped: %s", context["exception"])
        else:
            event_loop.default_exception_handler(context)

    store.on_write_error = write_failed
    loop.set_exception_handler(quiet_about_history)
    try:
        return await _dispatch(args, settings, store, console)
    except (Exception, asyncio.CancelledError):
        # Once history could not be written, whatever the command ran into next (a record
        # left without its answer, say) follows from that: the write failure is the message.
        if failures:
            raise failures[0] from None
        raise
    finally:
        store.on_write_error = None


# Arguments kept as text (in history, sent to the server). --image is among them: its path is
# recorded with the task. --out may hold any bytes the file system allows.
TEXT_ARGUMENTS = {
    "prompt": "PROMPT",
    "image": "--image",
    "negative": "--negative",
    "model": "--model",
    "aspect_ratio": "--aspect-ratio",
    "external_task_id": "--external-task-id",
    "callback_url": "--callback-url",
    "task_id": "TASK_ID",
}


def check_text_arguments(args: argparse.Namespace) -> None:
    """Refuse an argument that is not valid text in the locale's encoding: Python hands such
    bytes over as lone surrogates, which can be neither stored nor sent."""
    for name, option in TEXT_ARGUMENTS.items():
        value = getattr(args, name, None)
        if not isinstance(value, str):
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raw = value[exc.start].encode("utf-8", "surrogateescape")
            advice = "rename the file so that its name is UTF-8" if name == "image" else "give it as UTF-8 text"
            raise CommandError(
                f"{option}: not valid text (byte 0x{raw.hex()} at character {exc.start + 1}); "
                f"{advice}. Nothing was recorded or sent.",
                EXIT_INVALID,
            ) from None


def storage_exit_code(error: StorageError) -> int:
    return EXIT_INVALID if error.bad_input else EXIT_STORAGE


def _storage_error_in(exc: BaseException | None) -> StorageError | None:
    """The history's StorageError, also when a caller wrapped it in an error of its own."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, StorageError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _outside_history(exc: OSError) -> StorageError:
    """A write outside the history refused (e.g. copying into a full --out folder): named by
    the folder it went to, not by its temp file."""
    target = exc.filename2 or exc.filename
    folder = Path(os.fsdecode(target)).parent if target else Path.cwd()
    return storage_error("write to", folder, exc)


def _undo_unsent(store: HistoryStore | None) -> str:
    """After history stopped being writable: drop this command's tasks that were never sent,
    and say where the others stand."""
    if store is None:
        return ""
    notes = []
    for local_id in store.created:
        left = store.discard_unsent(local_id)
        if left is None:
            notes.append(f"Task {local_id} was not sent and is not kept.")
        elif left.status == "pending":
            notes.append(
                f"Task {local_id} is in the history and may have been sent: "
                f"`kling-tui show {local_id}` settles it once the history can be written."
            )
        elif left.is_final:
            notes.append(f"Task {local_id} is in the history ({left.status}).")
        else:
            notes.append(
                f"Task {local_id} is in the history ({left.status or 'unreadable'}): "
                f"`kling-tui show {local_id}` brings it up to date once the history can be written."
            )
    return " ".join(notes)


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one headless command; returns the exit code."""
    if stdout is None and hasattr(sys.stdout, "reconfigure"):
        # A prompt the terminal's encoding cannot show must not crash the command.
        sys.stdout.reconfigure(errors="backslashreplace")
    console = Console(bool(getattr(args, "json", False)), stdout, stderr)
    try:
        check_text_arguments(args)
        settings = load_settings()  # makes the config folder, or says why it cannot
        setup_logging()
    except CommandError as exc:
        report(console, None, exc)
        return exc.exit_code
    except StorageError as exc:
        report(console, None, CommandError(exc.message, storage_exit_code(exc)))
        return storage_exit_code(exc)
    args.sandbox = bool(getattr(args, "sandbox", False) or settings.sandbox)
    for warning in settings.warnings:
        console.warn(plain(warning))
    store: HistoryStore | None = None
    warned = 0

    def warn_about_history() -> None:
        # What the store noticed while the command ran (a damaged task.toml moved aside, say),
        # said before the command's own result or error.
        nonlocal warned
        if store is not None:
            for warning in store.warnings[warned:]:
                console.warn(plain(warning))
            warned = len(store.warnings)

    try:
        store = HistoryStore(history_dir(sandbox=args.sandbox))
        warn_about_history()
        code = asyncio.run(_dispatch_until_history_fails(args, settings, store, console))
        warn_about_history()
        console.stdout.flush()  # here, so that a closed pipe is reported by the handler below
        return code
    except CommandError as exc:
        warn_about_history()
        report(console, store, exc)
        return exc.exit_code
    except OSError as exc:
        found = _storage_error_in(exc)
        if found is None and not is_storage_problem(exc):
            raise
        in_history = found is not None
        error = found or _outside_history(exc)
        warn_about_history()
        message = " ".join(filter(None, (error.message, _undo_unsent(store) if in_history else "")))
        report(console, None, CommandError(message, storage_exit_code(error)))
        return storage_exit_code(error)
    except MissingCredentials:
        report(console, None, CommandError(missing_credentials_message(settings), EXIT_INVALID))
        return EXIT_INVALID
    except KlingError as exc:
        report(console, None, CommandError(plain(exc), EXIT_API, code=exc.code))
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
            warn_about_history()
            store.close()
