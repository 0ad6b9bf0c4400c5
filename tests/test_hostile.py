"""Hostile or broken server data, at the core level.

A tiny http.server on 127.0.0.1 answers what a broken or malicious server might: HTML
instead of an image, endless bodies, lying lengths, decompression bombs, redirects to
file:// and friends, and task JSON of every odd shape. Nothing may land outside the data
directory, no partial file may stay behind, and odd JSON is either read or refused as a
KlingError, never a crash.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.client import KlingClient
from kling_tui.api.download import MAX_NAME_CHARS, DownloadError, download_image, safe_filename
from kling_tui.api.errors import KlingError
from kling_tui.api.types import Task
from kling_tui.history.store import HistoryStore

LIMIT = 256 * 1024  # max_bytes for these downloads


def _png(width: int = 320, height: int = 320) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb(width: int, height: int) -> bytes:
    """A small PNG that claims `width` x `height` pixels of zeros (a few rows actually sent)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


ODD_TASKS: dict[str, object] = {
    "list-result": {"task_id": "1", "task_status": "succeed", "task_result": ["x"]},
    "int-images": {"task_id": "2", "task_status": "succeed", "task_result": {"images": 5}},
    "str-result": {"task_id": "3", "task_status": "succeed", "task_result": "done"},
    "odd-info": {"task_id": 4, "task_status": None, "task_info": ["a"], "created_at": True, "updated_at": "x"},
    "ext-int": {"task_id": "5", "task_status": "processing", "task_info": {"external_task_id": 55}},
    "bad-images": {
        "task_id": "6",
        "task_status": "succeed",
        "task_result": {
            "images": [
                None,
                3,
                {"url": 7},
                {"index": "a", "url": "https://x/1.png"},
                {"url": "https://x/2.png", "watermark_url": 1},
            ]
        },
    },
    "markup": {
        "task_id": "[bold]7[/]",
        "task_status": "failed",
        "task_status_msg": "[red]x\x1b[2J\u202e",
        "final_unit_deduction": 3,
    },
    "no-id": {"task_status": "succeed"},
    "not-object": ["task"],
}

FILES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/ok.png": (200, {"Content-Type": "image/png"}, _png()),
    "/page.png": (200, {"Content-Type": "image/png"}, b"<html><body>not an image</body></html>"),
    "/svg.png": (200, {"Content-Type": "image/svg+xml"}, b'<svg xmlns="http://www.w3.org/2000/svg"/>'),
    "/gif.png": (200, {"Content-Type": "image/gif"}, b"GIF89a" + b"\0" * 64),
    "/bomb.png": (200, {"Content-Type": "image/png"}, _bomb(9000, 9000)),  # beyond our pixel limit
    "/huge-bomb.png": (200, {"Content-Type": "image/png"}, _bomb(60000, 60000)),  # beyond Pillow's own
    "/cut.png": (200, {"Content-Type": "image/png"}, _png()[:200]),
}


class Hostile(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in FILES:
            status, headers, body = FILES[url.path]
            self._send(status, headers, body)
        elif url.path == "/endless.png":
            # No length at all: only the cap stops it.
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            chunk = _png()[:8] + b"\0" * 65528
            for _ in range(64):
                try:
                    self.wfile.write(chunk)
                except OSError:
                    return
        elif url.path == "/lying-length.png":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(_png()[:100])
        elif url.path == "/redirect":
            self._send(302, {"Location": parse_qs(url.query)["to"][0]}, b"")
        elif url.path == "/loop":
            self._send(302, {"Location": "/loop"}, b"")
        elif url.path.startswith("/v1/images/generations/"):
            ident = url.path.rsplit("/", 1)[1]
            self._json({"code": 0, "message": "SUCCEED", "request_id": "r", "data": ODD_TASKS.get(ident)})
        elif url.path == "/v1/images/generations":
            self._json(
                {"code": 0, "message": "SUCCEED", "request_id": "r", "data": list(ODD_TASKS.values()) + [None, 3]}
            )
        else:
            self._send(404, {}, b"nothing here")

    def _json(self, body: object) -> None:
        self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- downloads ---------------------------------------------------------------------------


async def test_a_real_image_is_saved(server, http, tmp_path):
    saved = await download_image(http, f"{server}/ok.png", tmp_path, "image-1.png", LIMIT)
    assert saved == tmp_path / "image-1.png"
    assert _everything_under(tmp_path) == ["image-1.png"]


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/page.png", "not an image"),
        ("/svg.png", "not an image"),
        ("/gif.png", "not"),
        ("/bomb.png", "too large to open safely"),
        ("/huge-bomb.png", "not an image"),
        ("/cut.png", "damaged or cut short"),
        ("/endless.png", "larger than"),
        ("/lying-length.png", "larger than"),
        ("/loop", "too many redirects"),
        ("/missing.png", "HTTP 404"),
    ],
)
async def test_hostile_bodies_are_refused_and_leave_nothing(server, http, tmp_path, path, reason):
    with pytest.raises(DownloadError) as refused:
        await download_image(http, f"{server}{path}", tmp_path, "image-1.png", LIMIT)
    assert reason in str(refused.value)
    assert _everything_under(tmp_path) == []  # no half-written or temp file stays


@pytest.mark.parametrize(
    "target",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/image.png",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "gopher://127.0.0.1:70/x",
        "//",
    ],
)
async def test_redirects_to_anything_but_http_are_refused(server, http, tmp_path, target):
    url = str(httpx.URL(f"{server}/redirect", params={"to": target}))
    with pytest.raises(DownloadError):
        await download_image(http, url, tmp_path, "image-1.png", LIMIT)
    assert _everything_under(tmp_path) == []


async def test_a_redirect_to_an_http_image_is_followed(server, http, tmp_path):
    url = str(httpx.URL(f"{server}/redirect", params={"to": f"{server}/ok.png"}))
    assert (await download_image(http, url, tmp_path, "a.png", LIMIT)).exists()


@pytest.mark.parametrize("name", ["../../escape.png", "/etc/passwd", "..", "a/../../b.png", "\\..\\x.png", "\x00.png"])
async def test_hostile_file_names_stay_in_the_folder(server, http, tmp_path, name):
    folder = tmp_path / "dest"
    saved = await download_image(http, f"{server}/ok.png", folder, name, LIMIT)
    assert saved.parent == folder.resolve()
    assert _everything_under(tmp_path) == ["dest", f"dest/{saved.name}"]


# -- names derived from ids and prompts --------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(max_size=400)
    | st.sampled_from(["..", ".", "...", " ", "CON", "nul.png", "a/../b", "\u202e.png", "\U0001f600" * 200 + ".png"])
)
def test_safe_filename_is_always_one_harmless_component(tmp_path, text):
    name = safe_filename(text)
    assert name and name not in (".", "..")
    assert not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\0" not in name
    assert len(name) <= MAX_NAME_CHARS
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    # The file system accepts it (length in bytes included).
    path = tmp_path / name
    path.write_bytes(b"")
    path.unlink()


@given(
    text=st.text(max_size=40)
    | st.sampled_from(
        ["..", "../x", "/etc", "20260101-000000-0000abcd\n", "20260101-000000-0000abcd/..", "٢٠٢٦٠١٠١-000000-0000abcd"]
    )
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_task_folders_cannot_leave_the_history(isolated_home, text):
    with HistoryStore() as store:
        try:
            folder = store.task_dir(text)
        except ValueError:
            return
        assert folder.parent == store.root
        assert folder.name == text and text.isascii() and text.isprintable()
        assert store.get(text) is None  # an id nothing was recorded under


def test_ids_from_the_server_never_name_folders(isolated_home):
    with HistoryStore() as store:
        record = store.new_record("generation", {"prompt": "x"}, external_task_id="../../outside")
        store.update(record.local_id, task_id="../../../etc/passwd", status="submitted")
        assert [p.name for p in store.root.iterdir()] == [record.local_id]
        assert store.find_by_task_id("../../../etc/passwd").local_id == record.local_id


# -- odd task JSON -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
task_keys = st.sampled_from(
    [
        "task_status",
        "task_status_msg",
        "task_result",
        "task_info",
        "created_at",
        "updated_at",
        "final_unit_deduction",
        "extra",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    task_id=st.text(max_size=20) | st.integers(),
    fields=st.dictionaries(task_keys, json_values, max_size=6),
    images=st.lists(
        json_values | st.fixed_dictionaries({"url": st.text(max_size=10)}, optional={"index": json_values}), max_size=3
    ),
)
def test_task_from_json_reads_any_shape(task_id, fields, images):
    data = {"task_id": task_id, **fields}
    if "task_result" not in data:
        data["task_result"] = {"images": images}
    task = Task.from_json(data)
    assert task.task_id == str(task_id)
    assert isinstance(task.task_status, str) and isinstance(task.task_status_msg, str)
    assert all(isinstance(i.url, str) and isinstance(i.index, int) for i in task.images)
    assert task.external_task_id is None or isinstance(task.external_task_id, str)
    for stamp in (task.created_at, task.updated_at):
        assert stamp is None or (isinstance(stamp, int) and not isinstance(stamp, bool))


@pytest.mark.parametrize("ident", list(ODD_TASKS))
async def test_the_client_reads_odd_tasks_or_refuses_them_cleanly(server, ident):
    async with KlingClient(server, ApiKeyAuth("k"), max_retries=0) as client:
        try:
            task = await client.get(ident)
        except KlingError:
            assert ident in ("no-id", "not-object")
            return
        assert isinstance(task.task_id, str) and isinstance(task.task_status, str)


async def test_an_odd_task_list_keeps_the_readable_tasks(server):
    async with KlingClient(server, ApiKeyAuth("k"), max_retries=0) as client:
        tasks = await client.list()
    assert len(tasks) == len([t for t in ODD_TASKS.values() if isinstance(t, dict) and "task_id" in t])
    assert {t.task_id for t in tasks} >= {"1", "2", "3", "4", "[bold]7[/]"}
