"""Promises kept when the server, the history files, the disk or the command line misbehave.

Each test sets up one hostile situation (a loopback server answering escape sequences, a
hand-edited task.toml, a read-only or full data directory, undecodable argv) and checks what
a user would see: one clear message, the right exit code, and nothing left behind.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_helpers import kling

from kling_tui.history.store import HistoryStore

HOSTILE_TEXT = "\x1b]0;owned\x07\x1b[2J[red]boom[/]\nFAKE 2026-01-01 ERROR forged line\u202e"


def _home() -> Path:
    return Path(os.environ["KLING_TUI_HOME"])


def _sandbox_store() -> HistoryStore:
    return HistoryStore(_home() / "data" / "sandbox" / "tasks")


class _Refuses(BaseHTTPRequestHandler):
    """A server that refuses every create with a message full of escape sequences."""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"code": 1201, "message": HOSTILE_TEXT, "request_id": "r"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def refusing_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# -- 9: server text in the log and history text on the terminal -----------------------------


def test_server_text_in_the_log_is_escaped(refusing_server):
    run = kling("generate", "a cat", env={"KLING_BASE_URL": refusing_server})
    assert run.code == 3
    assert "\x1b" not in run.stderr and "\x07" not in run.stderr
    log = (_home() / "data" / "logs" / "kling-tui.log").read_text(encoding="utf-8")
    assert "owned" in log  # the message was logged ...
    assert "\x1b" not in log and "\x07" not in log and "\u202e" not in log  # ... as inert text
    assert "\\x1b]0;owned\\x07" in log
    # The server's newline cannot start a line that looks like the log's own.
    assert not any(line.startswith("FAKE") for line in log.splitlines())


def test_a_status_edited_into_history_is_listed_escaped():
    task = kling("--sandbox", "generate", "a cat", "--json").json()
    folder = _home() / "data" / "sandbox" / "tasks" / task["local_id"]
    record = folder / "task.toml"
    text = record.read_text(encoding="utf-8")
    edited = text.replace(f'status = "{task["status"]}"', 'status = "\\u001b[2J\\u001b]0;owned\\u0007done"')
    assert edited != text
    record.write_text(edited, encoding="utf-8")
    (folder.parent.parent / "index.sqlite3").unlink()  # rebuilt from the task files
    listed = kling("--sandbox", "list")
    assert listed.code == 0
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout
    assert "\\x1b[2J\\x1b]0;owned\\x07done" in listed.stdout
    shown = kling("--sandbox", "download", task["local_id"])
    assert "\x1b" not in shown.stderr and "\\x1b[2J" in shown.stderr


# -- 13: files holding prompts are private -------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_index_and_the_log_are_readable_by_their_owner_only():
    assert kling("--sandbox", "generate", "a private prompt", "--wait").code == 0
    data = _home() / "data"
    log = data / "logs" / "kling-tui.log"
    index = data / "sandbox" / "index.sqlite3"
    assert _mode(log) == 0o600
    for path in (index, *index.parent.glob("index.sqlite3-*")):
        assert _mode(path) == 0o600, path


def test_an_older_world_readable_index_and_log_are_narrowed_on_start():
    assert kling("--sandbox", "generate", "a private prompt").code == 0
    data = _home() / "data"
    log = data / "logs" / "kling-tui.log"
    index = data / "sandbox" / "index.sqlite3"
    for path in (log, index):
        os.chmod(path, 0o644)
    assert kling("--sandbox", "list").code == 0
    assert _mode(log) == 0o600 and _mode(index) == 0o600
