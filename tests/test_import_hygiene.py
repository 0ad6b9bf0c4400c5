"""The core is plain Python: none of it pulls Textual in."""

import subprocess
import sys

CORE = [
    "kling_tui.capabilities",
    "kling_tui.validation",
    "kling_tui.models",
    "kling_tui.errors",
    "kling_tui.locations",
    "kling_tui.config",
    "kling_tui.store",
    "kling_tui.auth",
    "kling_tui.client",
    "kling_tui.download",
    "kling_tui.tracker",
    "kling_tui.workbench",
    "kling_tui.webhooks",
    "kling_tui.sandbox",
    "kling_tui.draft",
    "kling_tui.scheduler",
    "kling_tui.variants",
    "kling_tui.textdiff",
    "kling_tui.textsafe",
    "kling_tui.logs",
    "kling_tui.headless",
    "kling_tui.opener",
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
