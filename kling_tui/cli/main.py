"""Command line entry point: the TUI by default, plus `sandbox`, `locate` and the headless commands."""

from __future__ import annotations

import argparse
import sys

from kling_tui import __version__

IMAGE_PROTOCOLS = ("auto", "kitty", "sixel", "halfcell", "unicode", "none")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kling-tui",
        description="A keyboard-driven terminal app for the Kling AI image API.",
    )
    parser.add_argument("--version", action="version", version=f"kling-tui {__version__}")
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="run against an in-process Kling-compatible sandbox on 127.0.0.1 (no keys needed)",
    )
    parser.add_argument(
        "--image-protocol",
        choices=IMAGE_PROTOCOLS,
        default=None,
        help="how previews are drawn (default: auto-detect, or the config's ui.image_protocol)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sandbox = sub.add_parser("sandbox", help="serve the Kling-compatible sandbox and print its base URL")
    from kling_tui.sandbox.cli import add_arguments

    add_arguments(sandbox)

    sub.add_parser("locate", help="print every path kling-tui uses")
    _add_headless_commands(sub)
    return parser


def _float_arg(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None


def _common(parser: argparse.ArgumentParser, *, json_help: str | None = None) -> None:
    # SUPPRESS: without it, this default would overwrite a --sandbox given before the command.
    parser.add_argument(
        "--sandbox",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use an in-process sandbox (also accepted before the command)",
    )
    if json_help:
        parser.add_argument("--json", action="store_true", help=json_help)


def _add_headless_commands(sub) -> None:
    """The commands for scripts; their code lives in kling_tui.cli.headless, imported only when run."""
    gen = sub.add_parser(
        "generate",
        help="create an image task (recorded in the history), optionally wait and save the images",
        description="Create a text-to-image or image-to-image task. Exit codes: 0 done, 2 invalid input "
        "(nothing sent), 3 API or network error, 4 the task failed.",
    )
    gen.add_argument("prompt", metavar="PROMPT", help="what to draw (at most 2500 characters)")
    gen.add_argument(
        "--model", metavar="M", help="model_name, e.g. kling-v1, kling-v1-5, kling-v2-1 (default: the config's)"
    )
    gen.add_argument("--negative", metavar="TEXT", help="negative_prompt: what to avoid")
    gen.add_argument("--n", type=int, metavar="N", help="number of images, 1-9")
    gen.add_argument("--aspect-ratio", metavar="R", help="e.g. 16:9, 1:1, 9:16")
    gen.add_argument("--resolution", choices=("1k", "2k"))
    gen.add_argument("--image", metavar="PATH|URL", help="reference image: a .jpg/.png file or an http(s) URL")
    gen.add_argument("--image-reference", choices=("subject", "face"), help="how the reference image is used")
    gen.add_argument("--image-fidelity", type=_float_arg, metavar="F", help="reference strength, 0-1")
    gen.add_argument("--human-fidelity", type=_float_arg, metavar="F", help="face similarity, 0-1 (subject only)")
    gen.add_argument("--external-task-id", metavar="ID", help="your own unique id for the task (default: a new UUID)")
    gen.add_argument("--callback-url", metavar="URL", help="the service POSTs each status change here")
    gen.add_argument(
        "--wait", action="store_true", help="wait until the task ends, save its images and print their paths"
    )
    gen.add_argument("--out", metavar="DIR", help="with --wait: also copy the images into DIR")
    _common(gen, json_help="print the task as one JSON object")

    lst = sub.add_parser("list", help="list tasks from the local history, newest first")
    lst.add_argument("--limit", type=int, default=20, metavar="N", help="at most N tasks (default: %(default)s)")
    _common(lst, json_help="print a JSON array of tasks")

    show = sub.add_parser("show", help="show one task, refreshed from the server while it runs")
    show.add_argument("task_id", metavar="TASK_ID", help="a local id, a server task_id or an external_task_id")
    _common(show, json_help="print the task as one JSON object")

    download = sub.add_parser("download", help="save (or save again) the images of a finished task")
    download.add_argument("task_id", metavar="TASK_ID", help="a local id, a server task_id or an external_task_id")
    download.add_argument("--out", metavar="DIR", help="also copy the images into DIR")
    _common(download, json_help="print the task as one JSON object")

    export = sub.add_parser("export", help="write the whole history to stdout")
    export.add_argument("--format", choices=("jsonl", "csv"), required=True)
    _common(export)


HEADLESS_COMMANDS = ("generate", "list", "show", "download", "export")


def _locate() -> int:
    from kling_tui.base.locations import all_paths

    paths = all_paths()
    width = max(len(name) for name in paths) + 1
    for name, path in paths.items():
        print(f"{name + ':':<{width}} {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        from kling_tui.sandbox.cli import run

        return run(args)
    from kling_tui.base.locations import StorageError

    try:
        return _run(args)
    except StorageError as exc:
        # A folder kling-tui needs is a file, read-only or full: say which, never a traceback.
        from kling_tui.base.textsafe import plain

        print(f"kling-tui: error: {plain(exc.message)}", file=sys.stderr)
        return 2 if exc.bad_input else 5


def _run(args: argparse.Namespace) -> int:
    if args.command == "locate":
        return _locate()
    if args.command in HEADLESS_COMMANDS:
        from kling_tui.cli.headless import run as run_headless

        return run_headless(args)  # starts the log once its arguments and folders are checked
    from kling_tui.base.locations import config_dir
    from kling_tui.base.logs import setup_logging

    config_dir()  # first: a file in its place must stop the app before anything is created
    setup_logging()
    from kling_tui.ui.launch import run_tui

    return run_tui(sandbox=args.sandbox, image_protocol=args.image_protocol)


if __name__ == "__main__":
    sys.exit(main())
