"""`kling-tui templates`: the saved prompt templates (saved from the app's form with ctrl+b)."""

from __future__ import annotations

import argparse

from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_OK, Console
from kling_tui.work.saved_templates import load_templates, templates_file


def cmd_templates(args: argparse.Namespace) -> int:
    console = Console(bool(args.json))
    templates, warnings = load_templates()
    for warning in warnings:
        console.warn(warning)
    if console.as_json:
        console.json([{"name": t.name, "body": t.body, "variables": t.variables, "zip": t.zipped} for t in templates])
        return EXIT_OK
    if not templates:
        console.out(f"no saved templates ({templates_file()}); save one from the app's form with ctrl+b")
    for template in templates:
        console.out(plain(f"{template.name}: {template.body}"))
        for name, values in template.variables.items():
            console.out(plain(f"  --var {name}={','.join(v.replace(',', chr(92) + ',') for v in values)}"))
        if template.zipped:
            console.out("  --zip")
    return EXIT_OK
