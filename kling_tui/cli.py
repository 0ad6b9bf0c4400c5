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
    return parser


def _locate() -> int:
    from kling_tui.locations import all_paths

    for name, path in all_paths().items():
        print(f"{name + ':':<13} {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        from kling_tui.sandbox.cli import run

        return run(args)
    if args.command == "locate":
        return _locate()
    from kling_tui.ui.launch import run_tui

    return run_tui(sandbox=args.sandbox, image_protocol=args.image_protocol)


if __name__ == "__main__":
    sys.exit(main())
