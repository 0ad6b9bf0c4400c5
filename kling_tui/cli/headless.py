"""Runs one headless command (`generate`, `list`, `show`, `download`, `export`; a module each).

They run on the same core as the TUI (Workbench, HistoryStore), so a task a script creates
shows up in the TUI's history and the other way round. Results go to stdout (one JSON
object with --json; an array for `list`); errors, warnings and progress go to stderr, and
progress only when stderr is a terminal. Exit codes: see EXIT_*.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TextIO

from kling_tui.api.auth import MissingCredentials
from kling_tui.api.errors import KlingError
from kling_tui.base.locations import history_dir
from kling_tui.base.textsafe import plain
from kling_tui.cli.export import cmd_export, cmd_list
from kling_tui.cli.generate import cmd_generate
from kling_tui.cli.output import (
    EXIT_API,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    CommandError,
    Console,
    report,
)
from kling_tui.cli.session import missing_credentials_message
from kling_tui.cli.show import cmd_download, cmd_show
from kling_tui.config import Settings, load_settings
from kling_tui.history.store import HistoryStore


async def _dispatch(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    if args.command == "generate":
        return await cmd_generate(args, settings, store, console)
    if args.command == "show":
        return await cmd_show(args, settings, store, console)
    if args.command == "download":
        return await cmd_download(args, settings, store, console)
    if args.command == "list":
        return cmd_list(args, store, console)
    if args.command == "export":
        return cmd_export(args, store, console)
    raise ValueError(f"not a headless command: {args.command}")


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one headless command; returns the exit code."""
    if stdout is None and hasattr(sys.stdout, "reconfigure"):
        # A prompt the terminal's encoding cannot show must not crash the command.
        sys.stdout.reconfigure(errors="backslashreplace")
    console = Console(bool(getattr(args, "json", False)), stdout, stderr)
    settings = load_settings()
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
        code = asyncio.run(_dispatch(args, settings, store, console))
        warn_about_history()
        console.stdout.flush()  # here, so that a closed pipe is reported by the handler below
        return code
    except CommandError as exc:
        warn_about_history()
        report(console, store, exc)
        return exc.exit_code
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
