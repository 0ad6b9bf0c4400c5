"""The core is plain Python: none of it pulls Textual in."""

import subprocess
import sys

CORE = [
    "kling_tui.api.capabilities",
    "kling_tui.api.validation",
    "kling_tui.api.types",
    "kling_tui.api.errors",
    "kling_tui.base.locations",
    "kling_tui.config",
    "kling_tui.history.store",
    "kling_tui.api.auth",
    "kling_tui.api.client",
    "kling_tui.api.download",
    "kling_tui.work.tracker",
    "kling_tui.work.workbench",
    "kling_tui.api.webhooks",
    "kling_tui.sandbox",
    "kling_tui.history.draft",
    "kling_tui.work.budget",
    "kling_tui.work.variants",
    "kling_tui.base.textdiff",
    "kling_tui.base.textsafe",
    "kling_tui.base.logs",
    "kling_tui.cli.headless",
    "kling_tui.base.opener",
]


def test_core_modules_do_not_import_textual():
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in CORE)
        + "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.') or m.startswith('textual_image'))\n"
        + "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
