"""Open a file in the system's viewer, without blocking or inheriting the terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def open_in_viewer(path: Path) -> str | None:
    """Start the platform's opener; returns an error text when there is none."""
    if sys.platform == "darwin":
        command = ["open", str(path)]
    elif os.name == "nt":
        os.startfile(str(path))  # type: ignore[attr-defined]
        return None
    else:
        opener = shutil.which("xdg-open")
        if opener is None:
            return "no system viewer found (xdg-open is not installed; over SSH, copy the path instead)"
        command = [opener, str(path)]
    try:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        return f"cannot start the viewer: {exc.strerror or exc}"
    return None
