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


# -- 14: the header names where requests really go ---------------------------------------


async def test_the_header_shows_the_real_host_when_the_base_url_is_not_the_regions(sandbox, monkeypatch):
    from kling_tui.config import load_settings
    from kling_tui.sandbox import DEFAULT_API_KEY
    from kling_tui.ui.app import make_app
    from tests.tui_helpers import wait_for

    monkeypatch.setenv("KLING_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("KLING_BASE_URL", sandbox.base_url)
    settings = load_settings()
    assert settings.region == "singapore"  # the default region, overridden by the environment
    app = make_app(settings, image_protocol="none", poll_interval=0.05)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: "slots" in app.sub_title, what="the connected header")
        host = sandbox.base_url.split("//", 1)[1].rstrip("/")
        assert app.sub_title.startswith(f"{host} · ")
        assert "Singapore" not in app.sub_title


def test_the_header_names_the_region_only_while_requests_go_there():
    from types import SimpleNamespace

    from kling_tui.config import REGIONS, Settings
    from kling_tui.ui.app import KlingApp

    def label(settings: Settings) -> str:
        return KlingApp.endpoint_label.fget(SimpleNamespace(sandbox=None, settings=settings))

    assert label(Settings(region="beijing")) == "Beijing"
    assert label(Settings(region="beijing", custom_base_url=REGIONS["beijing"] + "/")) == "Beijing"
    assert label(Settings(region="beijing", custom_base_url=REGIONS["singapore"])) == "api-singapore.klingai.com"
    assert label(Settings(region="custom", custom_base_url="https://user:pw@proxy.example:8443/k")) == (
        "proxy.example:8443"
    )


# -- 10: only files inside the task's folder are its images -----------------------------------


def _edit_record(local_id: str, old: str, new: str, *, sandbox_history: bool = False) -> Path:
    folder = _home() / "data" / ("sandbox/tasks" if sandbox_history else "tasks") / local_id
    path = folder / "task.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return folder


@pytest.mark.parametrize("escape", ["../../../../../../../../etc/hostname", "/etc/hostname", "link"])
def test_image_paths_leading_out_of_the_task_folder_are_not_its_images(sandbox, tmp_path, escape):
    task = kling("generate", "a cat", "--wait", "--json", sandbox=sandbox).json()
    (saved,) = task["images"]
    original = Path(saved).read_bytes()
    folder = Path(saved).parent
    if escape == "link":  # the saved image replaced by a symlink to a file elsewhere
        Path(saved).unlink()
        Path(saved).symlink_to("/etc/hostname")
    else:
        _edit_record(task["local_id"], 'image_paths = [\n    "image-1.png",\n]', f'image_paths = ["{escape}"]')

    shown = kling("show", task["local_id"], "--json", sandbox=sandbox)
    assert shown.code == 0 and shown.json()["images"] == []
    if escape != "link":
        assert f"image path {escape!r} in task.toml is outside the task's folder; ignored" in shown.stderr

    out = tmp_path / "out"
    copied = kling("download", task["local_id"], "--out", str(out), "--json", sandbox=sandbox)
    assert copied.code == 0, copied.stderr
    (copy,) = out.iterdir()
    assert copy.read_bytes() == original  # saved again from the server, not /etc/hostname
    assert copied.json()["images"] == [str(folder / "image-1.png")]
    assert not (folder / "image-1.png").is_symlink()


# -- 7: a damaged task.toml is moved aside with a message --------------------------------


@pytest.mark.parametrize("command", [["show", "{id}"], ["list", "--json"], ["export", "--format", "jsonl"]])
def test_a_damaged_task_file_is_reported_naming_it_and_where_it_went(command):
    task = kling("--sandbox", "generate", "a cat", "--json").json()
    folder = _home() / "data" / "sandbox" / "tasks" / task["local_id"]
    (folder / "task.toml").write_text('kind = "generation"\nstatus = [unclosed\n', encoding="utf-8")

    run = kling("--sandbox", *(part.format(id=task["local_id"]) for part in command))
    (moved,) = folder.glob("task.toml.damaged-*")
    assert f"warning: Task {task['local_id']}: {folder / 'task.toml'} was damaged (not valid TOML" in run.stderr
    assert f"moved it to {moved}" in run.stderr
    if command[0] == "show":
        assert run.code == 2
        # The warning comes first, so "no task" is not the only thing the user reads.
        assert run.stderr.index("was damaged") < run.stderr.index("no task")
    else:
        assert run.code == 0 and task["local_id"] not in run.stdout
