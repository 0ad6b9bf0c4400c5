"""Running the real `python -m kling_tui` entry in a subprocess, against a sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_API_KEY, DEFAULT_SECRET_KEY

SECRETS = (DEFAULT_API_KEY, DEFAULT_SECRET_KEY, "eyJ")  # "eyJ": the start of any JWT


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def kling(
    *args: str, sandbox=None, auth: str = "api_key", env: dict[str, str] | None = None, timeout: float = 60
) -> Run:
    """Run kling-tui; `auth` is "api_key", "ak_sk" or "none". Every run is checked for secrets."""
    environ = {**os.environ, **(env or {})}  # KLING_TUI_HOME comes from the autouse fixture
    if sandbox is not None:
        environ["KLING_BASE_URL"] = sandbox.base_url
    if auth == "api_key":
        environ["KLING_API_KEY"] = DEFAULT_API_KEY
    elif auth == "ak_sk":
        environ["KLING_ACCESS_KEY"] = DEFAULT_ACCESS_KEY
        environ["KLING_SECRET_KEY"] = DEFAULT_SECRET_KEY
    done = subprocess.run(
        [sys.executable, "-m", "kling_tui", *args], env=environ, capture_output=True, text=True, timeout=timeout
    )
    run = Run(done.returncode, done.stdout, done.stderr)
    for secret in SECRETS:
        assert secret not in run.stdout and secret not in run.stderr, f"a secret leaked from {args}"
    return run
