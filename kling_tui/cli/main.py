"""Command line entry point: the TUI by default, plus `sandbox`, `locate` and the headless commands."""

from __future__ import annotations

import argparse
import sys

from kling_tui import __version__

IMAGE_PROTOCOLS = ("auto", "kitty", "sixel", "halfcell", "unicode", "none")
DEFAULT_MAX_WAIT = 30 * 60.0


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
    mcp = sub.add_parser(
        "mcp",
        help="serve the Model Context Protocol on stdin/stdout, for AI assistants",
        description="An MCP server over stdio: an assistant can list models, generate, wait for tasks, "
        "search the history and get saved images, through the same history as the app.",
    )
    _common(mcp)
    _add_headless_commands(sub)
    return parser


def _float_arg(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None


def _duration_arg(text: str) -> float:
    """Seconds, or a number with s, m or h: 90, 90s, 30m, 1.5h."""
    units = {"s": 1, "m": 60, "h": 3600}
    raw = text.strip().lower()
    scale = units.get(raw[-1:])
    number = raw[:-1] if scale else raw
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a duration such as 90, 45s, 30m or 2h (got {text!r})")
    return seconds


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
        "--model",
        metavar="M",
        help="model_name, e.g. kling-v1, kling-v3, kling-v2-1 (default: the first of default_models not retired; "
        "see `kling-tui models`)",
    )
    gen.add_argument("--negative", metavar="TEXT", help="negative_prompt: what to avoid")
    gen.add_argument("--n", type=int, metavar="N", help="number of images, 1-9")
    gen.add_argument("--aspect-ratio", metavar="R", help="e.g. 16:9, 1:1, 9:16")
    gen.add_argument("--resolution", choices=("1k", "2k"))
    gen.add_argument("--image", metavar="PATH|URL", help="reference image: a .jpg/.png file or an http(s) URL")
    gen.add_argument("--image-reference", choices=("subject", "face"), help="how the reference image is used")
    gen.add_argument("--image-fidelity", type=_float_arg, metavar="F", help="reference strength, 0-1")
    gen.add_argument("--human-fidelity", type=_float_arg, metavar="F", help="face similarity, 0-1 (subject only)")
    _template_options(gen)
    _task_options(gen)

    _add_image_commands(sub)

    lst = sub.add_parser("list", help="list tasks from the local history, newest first")
    lst.add_argument("--limit", type=int, default=20, metavar="N", help="at most N tasks (default: %(default)s)")
    lst.add_argument(
        "--search",
        metavar="WORDS",
        help="only tasks with every word (or a word starting with it) in the prompt, negative prompt, "
        "note, failure message, model, ids or template values",
    )
    _common(lst, json_help="print a JSON array of tasks")

    show = sub.add_parser("show", help="show one task, refreshed from the server while it runs")
    show.add_argument("task_id", metavar="TASK_ID", help="a local id, a server task_id or an external_task_id")
    _common(show, json_help="print the task as one JSON object")

    download = sub.add_parser("download", help="save (or save again) the images of a finished task")
    download.add_argument("task_id", metavar="TASK_ID", help="a local id, a server task_id or an external_task_id")
    download.add_argument("--out", metavar="DIR", help="also copy the images into DIR")
    _common(download, json_help="print the task as one JSON object")

    export = sub.add_parser(
        "export",
        help="write the whole history to stdout (jsonl, csv) or as a contact sheet to a folder (html)",
    )
    export.add_argument("--format", choices=("jsonl", "csv", "html"), required=True)
    export.add_argument("--out", metavar="DIR", help="with --format html: the folder to write (index.html + images)")
    _common(export)

    batch = sub.add_parser(
        "batch",
        help="create one task per row of a JSONL or CSV file; run it again to resume",
        description="Each row's columns are request fields (plus optional id, kind, note). Running the same "
        "file again sends only rows never sent. Exit codes: 0 done, 2 some rows break a rule (listed on "
        "stderr with their line), 3 some tasks were not created, 4 with --wait some tasks failed.",
    )
    batch.add_argument("file", metavar="FILE", help="a .jsonl (one JSON object a line) or .csv (a header row) file")
    batch.add_argument(
        "--kind",
        metavar="KIND",
        help="the endpoint of rows without a kind column, e.g. generation, multi (default: inferred)",
    )
    batch.add_argument(
        "--dry-run", action="store_true", help="print the plan, the count and a units estimate; send nothing"
    )
    batch.add_argument("--strict", action="store_true", help="send nothing when any row breaks a rule")
    batch.add_argument("--wait", action="store_true", help="wait until every task ends and save the images")
    batch.add_argument("--out", metavar="DIR", help="with --wait: also copy the images into DIR")
    batch.add_argument("--yes", action="store_true", help="send even when the rows would pass the config's [budget]")
    _common(batch, json_help="print one JSON object per row")

    models = sub.add_parser(
        "models",
        help="list the models: what each can do, its price per image by use and resolution, its retirement",
    )
    _common(models, json_help="print the table as one JSON object")

    templates = sub.add_parser(
        "templates",
        help="list the saved prompt templates, each with the --var options that fill it",
    )
    _common(templates, json_help="print a JSON array of templates")

    imp = sub.add_parser(
        "import",
        help="read back how an image was made (the parameters kling-tui keeps inside every image it saves)",
    )
    imp.add_argument("image", metavar="IMAGE", help="a .png, .jpg or .webp file")
    _common(imp, json_help="print the parameters as one JSON object")


def _ratio_arg(text: str) -> float:
    value = _float_arg(text)
    if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 2 (got {text!r})")
    return value


IMAGE_INPUT = "PATH|URL|TASK[:INDEX]"
INPUT_HELP = "a .jpg/.png file, an http(s) URL, or image INDEX (default 1) of a task in the history"


def _var_arg(text: str) -> tuple[str, list[str]]:
    from kling_tui.work.templates import parse_assignment

    try:
        return parse_assignment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _template_options(parser: argparse.ArgumentParser) -> None:
    """A prompt template: {a|b} alternatives in the prompt, {{NAME}} variables filled by --var."""
    parser.add_argument(
        "--var",
        action="append",
        type=_var_arg,
        metavar="NAME=A,B",
        help="the values of {{NAME}} in the prompt, comma-separated (\\, for a comma in one); repeatable. "
        "A prompt with {a|b} alternatives or variables makes one task per combination",
    )
    parser.add_argument(
        "--zip",
        action="store_true",
        help="pair the template's values instead: the first of each, then the second of each, ...",
    )


def _task_options(parser: argparse.ArgumentParser) -> None:
    """What every create command takes: ids, callback, waiting, the budget override."""
    parser.add_argument(
        "--external-task-id", metavar="ID", help="your own unique id for the task (default: a new UUID)"
    )
    parser.add_argument("--callback-url", metavar="URL", help="the service POSTs each status change here")
    parser.add_argument(
        "--wait", action="store_true", help="wait until the task ends, save its images and print their paths"
    )
    parser.add_argument("--out", metavar="DIR", help="with --wait: also copy the images into DIR")
    parser.add_argument("--yes", action="store_true", help="send even if it would pass the config's [budget]")
    parser.add_argument(
        "--max-wait",
        type=_duration_arg,
        default=DEFAULT_MAX_WAIT,
        metavar="TIME",
        help="how long to wait in all: for a free slot while the server answers 1303 (all slots in use), "
        "and with --wait for the task to end; seconds or e.g. 45s, 30m, 2h (default: 30m). "
        "Then exit 3; a task not sent by then is dropped as not created",
    )
    _common(parser, json_help="print the task as one JSON object")


EXIT_CODES = "Exit codes: 0 done, 2 invalid input (nothing sent), 3 API or network error, 4 the task failed."


def _add_image_commands(sub) -> None:
    omni = sub.add_parser(
        "omni",
        help="create an Omni image task: text to image, edits, fusions and series",
        description="Create an Omni image task (/v1/images/omni-image). Refer to the inputs in the prompt as "
        "<<<image_1>>>, <<<image_2>>> ... in --image order and <<<element_1>>> ... in --element order. "
        "An input taken from a task in the history is recorded as the new task's parent. " + EXIT_CODES,
    )
    omni.add_argument("prompt", metavar="PROMPT", help="what to make (at most 2500 characters)")
    omni.add_argument("--image", action="append", metavar=IMAGE_INPUT, help=f"an input image, repeatable: {INPUT_HELP}")
    omni.add_argument("--element", action="append", metavar="ID", help="a Kling element id, repeatable")
    omni.add_argument("--model", metavar="M", help="kling-image-o1 (default) or kling-v3-omni")
    omni.add_argument("--resolution", metavar="R", help="1k, 2k, or 4k where the model has it")
    omni.add_argument("--aspect-ratio", metavar="R", help="e.g. 16:9, 1:1, or auto (the default: from the inputs)")
    count = omni.add_mutually_exclusive_group()
    count.add_argument("--n", type=int, metavar="N", help="number of images, 1-9")
    count.add_argument("--series", type=int, metavar="K", help="a series of K coherent images, 2-9 (kling-v3-omni)")
    _template_options(omni)
    _task_options(omni)

    expand = sub.add_parser(
        "expand",
        help="expand (outpaint) an image on any of its four sides",
        description="Expand an image (/v1/images/editing/expand). Each side grows by a multiple of the "
        "original's width (--left, --right) or height (--up, --down), 0 to 2; the new image may be at most "
        "3 times the original's area. An image taken from a task in the history is recorded as the new "
        "task's parent. " + EXIT_CODES,
    )
    expand.add_argument("image", metavar=IMAGE_INPUT, help=INPUT_HELP)
    for side, what in (("left", "width"), ("right", "width"), ("up", "height"), ("down", "height")):
        expand.add_argument(
            f"--{side}", type=_ratio_arg, default=0.0, metavar="R", help=f"extend by R x the {what}, 0-2 (default 0)"
        )
    expand.add_argument("--prompt", metavar="P", help="what the new area shows (optional)")
    expand.add_argument("--n", type=int, metavar="N", help="number of images, 1-9")
    _task_options(expand)

    multi = sub.add_parser(
        "multi",
        help="create a multi-image to image task from subject, scene and style images",
        description="Create a multi-image to image task (/v1/images/multi-image2image). " + EXIT_CODES,
    )
    multi.add_argument("prompt", metavar="PROMPT", help="what to make (at most 2500 characters)")
    multi.add_argument(
        "--subject", action="append", metavar=IMAGE_INPUT, help=f"a subject image, 1-4, repeatable: {INPUT_HELP}"
    )
    multi.add_argument("--scene", metavar=IMAGE_INPUT, help="a scene image")
    multi.add_argument("--style", metavar=IMAGE_INPUT, help="a style image")
    multi.add_argument("--model", metavar="M", help="a model with multi-image to image, e.g. kling-v2-1")
    multi.add_argument("--n", type=int, metavar="N", help="number of images, 1-9")
    multi.add_argument("--aspect-ratio", metavar="R", help="e.g. 16:9, 1:1, 9:16")
    _template_options(multi)
    _task_options(multi)


HEADLESS_COMMANDS = (
    "generate",
    "omni",
    "expand",
    "multi",
    "list",
    "show",
    "download",
    "export",
    "import",
    "models",
    "batch",
)


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
    if args.command == "templates":
        from kling_tui.cli.templates import cmd_templates

        return cmd_templates(args)
    if args.command == "mcp":
        from kling_tui.base.logs import setup_logging
        from kling_tui.mcp.server import run as run_mcp

        setup_logging()
        return run_mcp(sandbox=bool(getattr(args, "sandbox", False)))
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
