"""`kling-tui sandbox`: serves in the foreground, prints how to use it, stops cleanly."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

RUN = (
    "import argparse, sys\n"
    "from kling_tui.sandbox import cli\n"
    "parser = argparse.ArgumentParser()\n"
    "cli.add_arguments(parser)\n"
    "sys.exit(cli.run(parser.parse_args(sys.argv[1:])))\n"
)


def start(*flags: str) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return proc, lines


def read_until(lines: queue.Queue, pattern: str, timeout: float = 15.0) -> tuple[str, re.Match]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return "".join(seen), match
    raise AssertionError(f"{pattern!r} not printed; got:\n{''.join(seen)}")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_cli_prints_its_url_and_credentials_and_stops_cleanly(stop_signal):
    proc, lines = start("--port", "0", "--api-key", "demo-key-1", "--slots", "3")
    try:
        printed, match = read_until(lines, r"export KLING_BASE_URL=(http://127\.0\.0\.1:\d+)")
        base_url = match.group(1)
        assert f"serving at {base_url}" in printed
        assert "demo-key-1" in printed and "sandbox-access-key" in printed
        answer = httpx.get(f"{base_url}/v1/images/generations", headers={"Authorization": "Bearer demo-key-1"})
        assert answer.json()["code"] == 0
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_reports_a_busy_port():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc, lines = start("--port", str(busy.getsockname()[1]))
        try:
            read_until(lines, "cannot listen on 127.0.0.1")
            assert proc.wait(timeout=15) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_loading_the_sandbox_cli_does_not_load_the_server_stack():
    code = (
        "import sys, argparse\n"
        "from kling_tui.sandbox import cli, SandboxConfig\n"
        "cli.add_arguments(argparse.ArgumentParser())\n"
        "print(sorted(m for m in ('uvicorn', 'starlette', 'textual', 'PIL') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
