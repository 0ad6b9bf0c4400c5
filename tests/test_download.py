"""Saving result images: real PNGs from the sandbox, and everything that must be refused."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from kling_tui.api.auth import JwtAuth
from kling_tui.api.client import KlingClient
from kling_tui.api.download import DownloadError, download_image, safe_filename
from kling_tui.api.types import GenerationRequest
from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY


@pytest.fixture
async def client(sandbox):
    async with KlingClient(sandbox.base_url, JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY), backoff=0.01) as c:
        yield c


@pytest.fixture
async def image_url(sandbox, client) -> str:
    task = await client.create(GenerationRequest(prompt="a green door", aspect_ratio="1:1"))
    sandbox.state.clock.advance(1)
    done = await client.get(task.task_id)
    assert done.task_status == "succeed"
    return done.images[0].url


def png_bytes(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def leftovers(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


async def test_a_result_image_is_saved_as_a_real_png(client, image_url, tmp_path):
    dest = tmp_path / "out"
    path = await client.download(image_url, dest, "green door.png")

    assert path == dest.resolve() / "green door.png"
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width == img.height  # 1:1 as requested
    assert leftovers(dest) == ["green door.png"]  # no temp files left behind


async def test_the_suffix_follows_the_real_format(client, image_url, tmp_path):
    assert (await client.download(image_url, tmp_path, "task-1_0")).name == "task-1_0.png"
    assert (await client.download(image_url, tmp_path, "task-1_0.jpg")).name == "task-1_0.jpg.png"


async def test_downloading_again_replaces_the_file(client, image_url, tmp_path):
    first = await client.download(image_url, tmp_path, "a.png")
    second = await client.download(image_url, tmp_path, "a.png")
    assert first == second
    assert leftovers(tmp_path) == ["a.png"]


async def test_no_credentials_are_sent_with_image_requests(sandbox, client, image_url, tmp_path):
    before = sandbox.state.counters()["auth_failed"]
    seen: list[httpx.Request] = []
    client.http.event_hooks["request"].append(lambda request: _record(seen, request))
    await client.download(image_url, tmp_path, "x.png")
    assert seen and all("authorization" not in r.headers for r in seen)
    assert sandbox.state.counters()["auth_failed"] == before


async def _record(seen: list, request: httpx.Request) -> None:
    seen.append(request)


async def test_a_non_image_is_refused_and_nothing_is_kept(sandbox, client, tmp_path):
    with pytest.raises(DownloadError, match="not an image"):
        await client.download(sandbox.base_url + "/_sandbox/counters", tmp_path, "counters.png")
    assert leftovers(tmp_path) == []


async def test_an_oversized_image_is_refused_and_deleted(client, image_url, tmp_path):
    with pytest.raises(DownloadError, match="byte limit"):
        await client.download(image_url, tmp_path, "big.png", max_bytes=1000)
    assert leftovers(tmp_path) == []


async def test_too_many_pixels_is_refused(client, image_url, tmp_path):
    with pytest.raises(DownloadError, match="too large"):
        await download_image(client.http, image_url, tmp_path, "bomb.png", max_pixels=100 * 100)
    assert leftovers(tmp_path) == []


async def test_an_expired_result_url_says_so(sandbox, client, image_url, tmp_path):
    sandbox.state.clock.advance(31 * 24 * 3600)
    with pytest.raises(DownloadError, match="no longer exists") as caught:
        await client.download(image_url, tmp_path, "old.png")
    assert caught.value.http_status == 404
    assert caught.value.retryable is False
    assert leftovers(tmp_path) == []


async def test_an_unsafe_name_stays_inside_the_folder(client, image_url, tmp_path):
    dest = tmp_path / "out"
    for name in ("../../escape.png", "/etc/passwd", "..", "a/../../b.png", "\x1b[31mred\n.png"):
        path = await client.download(image_url, dest, name)
        assert path.parent == dest.resolve()
    assert not (tmp_path / "escape.png").exists()
    assert all("\x1b" not in n and "\n" not in n for n in leftovers(dest))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "not a url", "javascript:alert(1)"])
async def test_only_http_urls_are_fetched(client, tmp_path, url):
    with pytest.raises(DownloadError, match="URL"):
        await client.download(url, tmp_path, "x.png")
    assert leftovers(tmp_path) == []


def redirecting_transport(final_location: str) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(302, headers={"location": final_location})
        if request.url.path == "/loop":
            return httpx.Response(302, headers={"location": "/loop"})
        if request.url.path == "/cut.png":
            return httpx.Response(200, content=png_bytes((64, 64))[:60])
        return httpx.Response(200, content=png_bytes())

    return httpx.MockTransport(handle)


async def test_redirects_are_followed_to_http_only(tmp_path):
    async with httpx.AsyncClient(transport=redirecting_transport("https://cdn.example/img.png")) as http:
        path = await download_image(http, "https://origin.example/start", tmp_path, "r.png")
        assert path.exists()
    async with httpx.AsyncClient(transport=redirecting_transport("file:///etc/passwd")) as http:
        with pytest.raises(DownloadError, match="http"):
            await download_image(http, "https://origin.example/start", tmp_path, "evil.png")
        with pytest.raises(DownloadError, match="too many redirects"):
            await download_image(http, "https://origin.example/loop", tmp_path, "loop.png")
    assert leftovers(tmp_path) == ["r.png"]


async def test_a_cut_image_is_refused(tmp_path):
    async with httpx.AsyncClient(transport=redirecting_transport("")) as http:
        with pytest.raises(DownloadError, match="damaged"):
            await download_image(http, "https://cdn.example/cut.png", tmp_path, "cut.png")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "text",
    [
        "../../etc/passwd",
        "..",
        ".",
        "/",
        "a\\b",
        "a/b",
        "x\x00y",
        "line\nbreak",
        "\u202etxt.exe",
        ".hidden",
        "CON",
        "nul.png",
        "a" * 500 + ".png",
        "   ",
        "",
    ],
)
def test_safe_filename_is_one_harmless_component(text):
    name = safe_filename(text, "fallback")
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name
    assert not name.startswith(".")
    assert all(ch.isprintable() for ch in name)
    assert len(name) <= 150
    assert Path(name).name == name
    assert name.split(".")[0].upper() not in ("CON", "NUL")


def test_safe_filename_keeps_ordinary_names_and_long_suffixes():
    assert safe_filename("sunset over the sea_0.png") == "sunset over the sea_0.png"
    assert safe_filename("Ünïcødé 猫.png") == "Ünïcødé 猫.png"
    assert safe_filename("a" * 500 + ".png").endswith(".png")
    assert safe_filename("", "fallback") == "fallback"
    assert safe_filename("...", "") == "image"
