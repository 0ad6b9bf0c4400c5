"""The shared loop against a misbehaving server or disk: statuses the protocol does not define,
history that cannot be written, answers that trickle or inflate, tasks claiming too many
images, and reference "images" that are not files. Nothing may stop the loop, hang a command
or lose what history already holds.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import socket
import threading
import time
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.client import AnswerTooLarge, KlingClient
from kling_tui.api.download import DownloadError, download_image
from kling_tui.api.errors import NetworkError
from kling_tui.api.types import GenerationRequest
from kling_tui.base import locations
from kling_tui.base.locations import history_dir
from kling_tui.config import load_settings
from kling_tui.history import store as store_module
from kling_tui.history.store import HistoryStore
from kling_tui.work.workbench import HistoryWriteError, status_from_server
from tests.cli_helpers import kling
from tests.test_scheduler import make_bench
from tests.test_tui_keys import app_for, submit_prompt
from tests.tui_helpers import cell_text, sandbox_history, wait_for


async def wait_until(condition, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(0.02)


@pytest.fixture
def sandbox_config(sandbox_config):
    sandbox_config.processing_seconds = 1.0  # long enough to change a task under way
    return sandbox_config


def sandbox_task(sandbox, external_task_id: str | None = None):
    tasks = list(sandbox.state.tasks.values())
    if external_task_id is not None:
        tasks = [t for t in tasks if t.external_task_id == external_task_id]
    return tasks[0] if tasks else None


def set_status(sandbox, task, status) -> None:
    with sandbox.state._lock:
        task.status = status


# -- unknown statuses ---------------------------------------------------------------------


async def test_unknown_statuses_are_kept_shown_and_followed_to_the_end(sandbox):
    bench = make_bench(sandbox)
    errors: list[Exception] = []
    following = asyncio.create_task(bench.follow(on_error=errors.append))
    try:
        record = await bench.submit(GenerationRequest(prompt="odd statuses"))
        task = sandbox_task(sandbox)
        for odd, recorded in (("cancelled", "cancelled"), (7, "7"), ("queued", "server:queued")):
            set_status(sandbox, task, odd)
            await wait_until(lambda r=recorded: bench.store.get(record.local_id).status == r, what=recorded)
            assert not following.done()
            assert bench.store.get(record.local_id).is_active
        # A restart meanwhile follows it too, and never sends it again ("queued" is the server's).
        again = make_bench(sandbox, store=HistoryStore())
        await again.reconcile()
        assert again.queue == [] and again.tracker.is_tracked(task.task_id)
        await again.aclose()
        await again.client.aclose()
        set_status(sandbox, task, "processing")
        await wait_until(lambda: bench.store.get(record.local_id).status == "succeed")
        await wait_until(lambda: bench.store.get(record.local_id).image_paths == ["image-1.png"])
    finally:
        following.cancel()
        await bench.aclose()
        await bench.client.aclose()
    assert not errors
    assert sandbox.state.counters()["tasks_created"] == 1


async def test_the_tui_shows_an_unknown_status_and_keeps_going(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        key = await submit_prompt(app, pilot, "a cancelled cat")
        await wait_for(pilot, lambda: sandbox_history().get(key).task_id is not None)
        task = sandbox_task(sandbox, sandbox_history().get(key).external_task_id)
        set_status(sandbox, task, "cancelled")
        await wait_for(pilot, lambda: "cancelled" in cell_text(app.table, key, "status"))
        set_status(sandbox, task, "processing")
        await wait_for(pilot, lambda: "succeed" in cell_text(app.table, key, "status"), timeout=20)
        assert app.is_running


def test_generate_wait_follows_an_unknown_status_and_max_wait_ends_it(sandbox):
    result: dict = {}

    def cancel_it() -> None:
        deadline = time.monotonic() + 30
        while (task := sandbox_task(sandbox)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if task is not None:
            set_status(sandbox, task, "cancelled")
        result["task"] = task

    helper = threading.Thread(target=cancel_it)
    helper.start()
    started = time.monotonic()
    run = kling("generate", "never ends", "--wait", "--max-wait", "4s", "--json", sandbox=sandbox)
    helper.join()
    assert result["task"] is not None
    assert run.code == 3, run.stderr
    assert time.monotonic() - started < 30
    assert "Traceback" not in run.stderr
    assert "gave up waiting after 4s" in run.stderr and "still cancelled" in run.stderr
    # Reported as still going on the server: history agrees (it is followed again later).
    with HistoryStore(history_dir()) as store:
        (row,) = store.recent(5)
        assert row.status == "cancelled" and row.task_id == result["task"].task_id


# -- history that cannot be written ---------------------------------------------------------


async def test_a_full_disk_is_reported_and_retried_and_loses_nothing(sandbox, monkeypatch):
    bench = make_bench(sandbox)
    errors: list[Exception] = []
    following = asyncio.create_task(bench.follow(on_error=errors.append))
    full = threading.Event()
    real_write = store_module.write_atomic

    def write(path, data, **kwargs):
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(store_module, "write_atomic", write)
    try:
        record = await bench.submit(GenerationRequest(prompt="written later"))
        full.set()
        await wait_until(lambda: any(isinstance(e, HistoryWriteError) for e in errors), what="the write error")
        assert "No space left on device" in str(errors[0])
        await wait_until(lambda: sandbox_task(sandbox).status == "succeed")
        await asyncio.sleep(0.3)  # a few poll cycles while the disk stays full
        assert not following.done()
        kept = HistoryStore().get(record.local_id)  # still readable, as it was
        assert kept is not None and kept.task_id == record.task_id
        full.clear()
        await wait_until(lambda: bench.store.get(record.local_id).status == "succeed", what="the retried write")
        await wait_until(lambda: bench.store.get(record.local_id).image_paths == ["image-1.png"])
    finally:
        following.cancel()
        await bench.aclose()
        await bench.client.aclose()


# -- too many images ------------------------------------------------------------------------


async def test_a_task_claiming_more_images_than_asked_saves_only_those(sandbox, caplog):
    bench = make_bench(sandbox)
    following = asyncio.create_task(bench.follow())
    caplog.set_level(logging.WARNING, logger="kling_tui.work.workbench")
    try:
        record = await bench.submit(GenerationRequest(prompt="one, please", n=1))
        task = sandbox_task(sandbox)
        with sandbox.state._lock:
            task.n = 2000
        await wait_until(lambda: bench.store.get(record.local_id).status == "succeed")
        await wait_until(lambda: bench.store.get(record.local_id).image_paths == ["image-1.png"])
    finally:
        following.cancel()
        await bench.aclose()
        await bench.client.aclose()
    saved = bench.store.get(record.local_id)
    assert len(saved.image_urls) == 1
    assert sorted(p.name for p in bench.store.task_dir(record.local_id).iterdir()) == ["image-1.png", "task.toml"]
    assert "lists 2000 images for 1 asked" in caplog.text and "ignoring 1999" in caplog.text


# -- answers that trickle or inflate --------------------------------------------------------


@functools.cache
def gzip_bomb(inflated_mb: int = 256) -> bytes:
    """A gzip'd JSON list of `inflated_mb` MB of spaces: a few hundred KB on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b"[")]
    spaces = b" " * (1024 * 1024)
    parts += [packer.compress(spaces) for _ in range(inflated_mb)]
    parts.append(packer.compress(b"]") + packer.flush())
    return b"".join(parts)


class Trickle(BaseHTTPRequestHandler):
    """Answers every request at one byte a second: each read is quick, the whole never ends."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/bomb"):
            body = gzip_bomb()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1.0)
        except OSError:
            return

    do_POST = do_GET


@pytest.fixture(scope="module")
def trickle():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


async def test_a_request_ends_at_its_deadline_however_slowly_bytes_come(trickle):
    async with KlingClient(trickle, ApiKeyAuth("k"), request_deadline=1.5, max_retries=1, backoff=0.01) as client:
        started = time.monotonic()
        with pytest.raises(NetworkError) as caught:
            await client.list()
        elapsed = time.monotonic() - started
    assert "no complete answer within 1.5 s" in str(caught.value)
    assert elapsed < 6  # two attempts of 1.5 s; without the deadline, 1000 s
    assert client.stats.requests == 2  # then the usual rule: a read is tried again


async def test_a_create_past_its_deadline_is_looked_up_not_blindly_resent(trickle):
    async with KlingClient(trickle, ApiKeyAuth("k"), request_deadline=1.0, max_retries=0) as client:
        with pytest.raises(NetworkError):
            await client.create(GenerationRequest(prompt="slow"))
    assert client.stats.lookups == 1 and client.stats.resends == 0


async def test_a_download_ends_at_its_deadline(trickle, tmp_path):
    async with httpx.AsyncClient(timeout=30) as http:
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            await download_image(http, f"{trickle}/slow.png", tmp_path, "image-1.png", deadline=1.5)
    assert time.monotonic() - started < 5
    assert "did not finish within 1.5 s" in str(caught.value) and caught.value.retryable
    assert list(tmp_path.iterdir()) == []


def test_the_deadline_is_set_in_the_config():
    path = locations.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[api]\nrequest_deadline = 12\n")
    assert load_settings().request_deadline == 12.0
    path.write_text("[api]\nrequest_deadline = 0\n")
    settings = load_settings()
    assert settings.request_deadline == 60.0
    assert any("request_deadline" in w for w in settings.warnings)


async def test_a_gzip_bomb_answer_is_refused_without_inflating_it(trickle):
    gzip_bomb()  # made before measuring: the server runs in this process
    async with KlingClient(trickle + "/bomb", ApiKeyAuth("k"), max_retries=3) as client:
        tracemalloc.start()
        try:
            with pytest.raises(AnswerTooLarge) as caught:
                await client.list()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "larger than 8 MB once decoded" in str(caught.value)
    assert client.stats.requests == 1  # it would be as large again: not retried
    assert peak < 64 * 1024 * 1024  # the whole answer would be 256 MB


# -- reference images that are not files -----------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "zero", "urandom", "directory"])
def test_a_reference_image_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    path = tmp_path / "ref.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(f"/dev/{kind}")
    started = time.monotonic()
    run = kling("generate", "a portrait", "--image", str(path), auth="none")
    assert time.monotonic() - started < 30
    assert run.code == 2, run.stderr
    assert "image (--image): must be a regular image file" in run.stderr
    assert "Traceback" not in run.stderr
    with HistoryStore(history_dir()) as store:
        assert store.count() == 0  # nothing recorded, nothing sent


def test_socket_is_refused_too(tmp_path):
    path = tmp_path / "sock.png"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        run = kling("generate", "a portrait", "--image", str(path), auth="none")
    assert run.code == 2 and "is a socket" in run.stderr


@pytest.mark.parametrize(
    "raw, recorded",
    [
        ("cancelled", "cancelled"),
        ("42", "42"),
        ("not_created", "server:not_created"),
        ("pending", "server:pending"),
        ("\x1b[2Jgone\u202e", "\\x1b[2Jgone\\u202e"),
        ("\ue000 odd", "? odd"),
        ("x" * 500, "x" * 57),
        ("   ", "unknown"),
    ],
)
def test_any_server_status_is_recorded_as_printable_data(raw, recorded):
    status = status_from_server(raw)
    assert status == recorded
    with HistoryStore(history_dir()) as store:
        record = store.new_record("generation", {"prompt": "p"})
        assert store.update(record.local_id, status=status, task_id="t").is_active
        assert store.get(record.local_id).status == recorded
