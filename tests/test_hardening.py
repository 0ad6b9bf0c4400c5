"""Promises kept when the server, the history files, the disk or the command line misbehave.

Each test sets up one hostile situation (a loopback server answering escape sequences, a
hand-edited task.toml, a read-only or full data directory, undecodable argv) and checks what
a user would see: one clear message, the right exit code, and nothing left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_helpers import Run, kling

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


def test_log_files_made_by_rotation_are_private_too(tmp_path):
    import logging

    from kling_tui.base.logs import PrivateLogHandler

    handler = PrivateLogHandler(tmp_path / "kling-tui.log", maxBytes=200, backupCount=2, encoding="utf-8")
    logger = logging.getLogger("test_hardening.rotation")
    logger.addHandler(handler)
    try:
        for i in range(20):
            logger.warning("line %d of a prompt nobody else may read", i)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["kling-tui.log", "kling-tui.log.1", "kling-tui.log.2"]
    assert all(_mode(p) == 0o600 for p in files)


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
        return KlingApp.endpoint_label.fget(SimpleNamespace(sandbox_mode=False, settings=settings))

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


# -- 8: a read-only or full data directory ---------------------------------------------------


def _can_mount() -> bool:
    """Whether this machine lets a test mount file systems in a private mount namespace."""
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True, timeout=10)
    if probe.returncode == 0:
        return True
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True, timeout=10)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _can_mount(), reason="cannot mount file systems here (unshare)")


def _unshare() -> list[str]:
    plain = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    return ["unshare", "-m"] if plain else ["unshare", "-rm"]


def _kling_mounted(setup: str, *args: str, keep: Path | None = None) -> Run:
    """kling-tui in a private mount namespace after the shell commands `setup` (with $HOME_DIR
    as KLING_TUI_HOME): the rest of the machine never sees those mounts. With `keep`, the data
    folder as the command left it is copied there before the namespace goes."""
    home = str(_home())
    after = f'; cp -a "$HOME_DIR/data" "{keep}"' if keep else ""
    script = f'{setup} && {{ "$@"; code=$?; }}{after}; exit $code'
    done = subprocess.run(
        [*_unshare(), "sh", "-c", script, "sh", sys.executable, "-m", "kling_tui", *args],
        env={**os.environ, "HOME_DIR": home},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def _history_files() -> dict[str, str]:
    tasks = _home() / "data" / "sandbox" / "tasks"
    return {p.parent.name: p.read_text(encoding="utf-8") for p in tasks.glob("*/task.toml")}


def _assert_one_clear_error(run: Run, *phrases: str) -> None:
    assert "Traceback" not in run.stderr and "Error:" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert all(line.startswith("kling-tui: ") for line in lines), run.stderr  # warnings may come first
    (error,) = (line for line in lines if line.startswith("kling-tui: error: "))
    assert error.startswith("kling-tui: error: cannot "), run.stderr
    for phrase in phrases:
        assert phrase in error, run.stderr


READ_ONLY = 'mount --bind "$HOME_DIR" "$HOME_DIR" && mount -o remount,bind,ro "$HOME_DIR"'


@needs_mounts
@pytest.mark.parametrize(
    "command",
    [
        ["--sandbox", "list"],
        ["--sandbox", "show", "{id}"],
        ["--sandbox", "generate", "a dog"],
        ["list"],
        ["locate"],
        ["--sandbox", "--image-protocol", "none"],  # the TUI's start
    ],
)
def test_a_read_only_data_directory_gives_one_clear_message(command):
    task = kling("--sandbox", "generate", "a cat", "--json").json()
    before = _history_files()

    run = _kling_mounted(READ_ONLY, *(part.format(id=task["local_id"]) for part in command))
    assert run.code == 5
    _assert_one_clear_error(run, str(_home() / "data"), "Read-only file system", "KLING_TUI_HOME")
    assert _history_files() == before


def _fill_but(kilobytes: int) -> str:
    """Shell: a 1 MiB tmpfs as the data folder, filled up to `kilobytes` KiB left."""
    data = '"$HOME_DIR/data"'
    return (
        f"mount -t tmpfs -o size=1m tmpfs {data} && "
        f"avail=$(df -k --output=avail {data} | tail -1) && "
        f"dd if=/dev/zero of={data}/filler bs=1k count=$((avail - {kilobytes})) 2>/dev/null"
    )


@needs_mounts
def test_a_full_disk_ends_generate_with_one_message_and_leaves_nothing_queued(tmp_path):
    """The free space runs out at a different step for each size: opening the index, recording
    the task, queueing it, sending it, recording the answer."""
    (_home() / "data").mkdir(parents=True)
    codes = []
    # 520: a fresh history's index, with its full-text search tables, needs a little over 400 KiB.
    for free in (0, 48, 104, 112, 144, 200, 232, 400, 520):
        left = tmp_path / f"left-{free}"
        run = _kling_mounted(_fill_but(free), "--sandbox", "generate", "a cat", "--json", keep=left)
        codes.append(run.code)
        tasks = {p.parent.name: p.read_text(encoding="utf-8") for p in left.glob("sandbox/tasks/*/task.toml")}
        assert all('status = "queued"' not in text for text in tasks.values()), free
        assert all((folder / "task.toml").exists() for folder in left.glob("sandbox/tasks/*")), free
        if run.code == 0:
            continue
        assert run.code == 5, run.stderr
        _assert_one_clear_error(run, "No space left on device", "Free some space")
        assert json.loads(run.stdout)["error"]["exit_code"] == 5
        for local_id, text in tasks.items():  # what it says of each task it recorded is what it left
            if 'status = "pending"' in text:
                assert f"Task {local_id} is in the history and may have been sent" in run.stderr
            else:
                assert f"Task {local_id} is in the history (" in run.stderr
    assert 5 in codes and 0 in codes


@needs_mounts
def test_a_full_out_folder_ends_generate_with_one_message(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fill = f'mount -t tmpfs -o size=64k tmpfs "{out}" && dd if=/dev/zero of="{out}/filler" bs=1k count=60 2>/dev/null'
    run = _kling_mounted(fill, "--sandbox", "generate", "a cat", "--n", "4", "--wait", "--out", f"{out}/copies")
    assert run.code == 5
    _assert_one_clear_error(run, f"cannot write to {out}/copies: No space left on device", "Free some space")
    (record,) = _history_files().values()  # the task itself is saved, with its images
    assert 'status = "succeed"' in record


ENOSPC_AFTER = """
import errno, os, sys
real_open, writes = os.open, [0]
def full_after(path, flags, *args, **kwargs):
    if ".tmp" in os.fspath(path) and flags & os.O_CREAT:
        writes[0] += 1
        if writes[0] > int(sys.argv[1]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
    return real_open(path, flags, *args, **kwargs)
os.open = full_after
from kling_tui.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("writes_before_full", range(6))
def test_a_full_disk_at_any_history_write_leaves_no_queued_task(writes_before_full):
    """The disk fills after the first N task.toml writes of `generate` (os.open refuses at the
    OS boundary): a task the command never sent is never left queued for a later start to send."""
    done = subprocess.run(
        [sys.executable, "-c", ENOSPC_AFTER, str(writes_before_full), "--sandbox", "generate", "a cat", "--wait"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    run = Run(done.returncode, done.stdout, done.stderr)
    assert run.code == 5, run.stderr
    _assert_one_clear_error(run, "No space left on device", "task.toml")
    history = _history_files()
    assert all('status = "queued"' not in text for text in history.values())
    tasks = _home() / "data" / "sandbox" / "tasks"
    assert all((folder / "task.toml").exists() for folder in tasks.iterdir())  # no empty folder
    if history:  # what the command says of the task is what it left
        ((local_id, text),) = history.items()
        status = tomllib.loads(text)["status"]
        if status == "pending":
            assert f"Task {local_id} is in the history and may have been sent" in run.stderr
        else:
            assert f"Task {local_id} is in the history ({status})" in run.stderr
    elif writes_before_full == 0:
        assert "Task " not in run.stderr  # nothing was recorded, so there is nothing to say
    else:
        assert "was not sent and is not kept" in run.stderr


ENOSPC_FOR_IMAGES = """
import errno, os, sys
real_open = os.open
def full_for_images(path, flags, *args, **kwargs):
    if os.fspath(path).endswith(".part"):  # a downloading image's temp file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
    return real_open(path, flags, *args, **kwargs)
os.open = full_for_images
from kling_tui.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_while_saving_the_images_ends_generate_wait_with_exit_5():
    done = subprocess.run(
        [sys.executable, "-c", ENOSPC_FOR_IMAGES, "--sandbox", "generate", "a cat", "--wait"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    run = Run(done.returncode, done.stdout, done.stderr)
    assert run.code == 5, run.stderr
    _assert_one_clear_error(run, "cannot save the images into", "No space left on device", "Free some space")
    ((local_id, text),) = _history_files().items()
    assert 'status = "succeed"' in text  # the task is done; only its images wait
    assert f"`kling-tui download {local_id}` saves them later" in run.stderr


# -- 15: undecodable arguments, files where folders must be -------------------------------


def _kling_bytes(*args: str | bytes, env: dict[str, str] | None = None) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "kling_tui", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=60,
    )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.mark.parametrize(
    "args, option",
    [
        (["--sandbox", "generate", b"a \xff cat"], "PROMPT"),
        (["--sandbox", "generate", "a cat", "--negative", b"\xc3("], "--negative"),
        (["--sandbox", "show", b"20261129-000000-\xff"], "TASK_ID"),
        (["--sandbox", "generate", "a cat", "--image", b"{tmp}/\xff.png"], "--image"),
    ],
)
def test_an_argument_that_is_not_utf8_exits_2_and_creates_nothing(args, option, tmp_path):
    from PIL import Image

    # A real image whose name is not UTF-8: the file system allows it, history cannot keep it.
    Image.new("RGB", (400, 400)).save(os.fsdecode(bytes(tmp_path) + b"/\xff.png"))
    run = _kling_bytes(*(a.replace(b"{tmp}", bytes(tmp_path)) if isinstance(a, bytes) else a for a in args))
    assert run.code == 2
    assert "Traceback" not in run.stderr
    assert f"kling-tui: error: {option}: not valid text (byte 0x" in run.stderr
    assert "Nothing was recorded or sent" in run.stderr
    assert not _home().exists()  # no task folder, no index, not even a log


@pytest.mark.parametrize("command", [["list"], ["--sandbox", "generate", "a cat"], ["locate"], []])
def test_kling_tui_home_that_is_a_file_exits_2_naming_it(tmp_path, command):
    home = tmp_path / "not-a-folder"
    home.write_text("mine\n")
    run = _kling_bytes(*command, env={"KLING_TUI_HOME": str(home)})
    assert run.code == 2
    assert "Traceback" not in run.stderr
    assert f"{home} is a file, not a folder" in run.stderr and "KLING_TUI_HOME" in run.stderr
    assert home.read_text() == "mine\n"


@pytest.mark.parametrize("command", [["list"], ["--sandbox", "generate", "a cat"], []])
def test_a_config_folder_that_is_a_file_exits_2_and_creates_nothing(command):
    home = _home()
    home.mkdir()
    (home / "config").write_text("mine\n")
    run = _kling_bytes(*command)
    assert run.code == 2
    assert "Traceback" not in run.stderr
    assert f"cannot create the config folder {home / 'config'}: {home / 'config'} is a file" in run.stderr
    assert sorted(p.name for p in home.iterdir()) == ["config"]


def test_a_record_that_cannot_be_written_leaves_no_task_folder():
    with _sandbox_store() as store:
        with pytest.raises(UnicodeEncodeError):
            store.new_record("generation", {"prompt": "a \udcff cat", "model_name": "kling-v1"})
        assert list(store.root.iterdir()) == [] and store.recent() == [] and store.created == []
