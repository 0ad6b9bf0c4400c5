"""The core is plain Python: none of it pulls Textual in. Every module of the core packages is
imported, so a module added later is covered without touching this test."""

import pkgutil
import subprocess
import sys

import kling_tui

CORE_PACKAGES = ("api", "base", "history", "work", "cli", "sandbox")


def core_modules() -> list[str]:
    names = ["kling_tui.config"]
    for info in pkgutil.walk_packages(kling_tui.__path__, "kling_tui."):
        if info.name.split(".")[1] in CORE_PACKAGES:
            names.append(info.name)
    return names


def test_every_core_package_is_covered():
    modules = core_modules()
    for package in CORE_PACKAGES:
        assert f"kling_tui.{package}" in modules
    assert "kling_tui.work.tracker" in modules and "kling_tui.sandbox.routes.tasks" in modules


def test_core_modules_do_not_import_textual():
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in core_modules())
        + "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.') or m.startswith('textual_image'))\n"
        + "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
