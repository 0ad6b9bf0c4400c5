"""Result images: real PNGs, sized by ratio and resolution, deterministic, gone after 30 days."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from PIL import Image

from kling_tui.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

GEN = "/v1/images/generations"
DAY = 86400


@pytest.fixture
def http(sandbox):
    with httpx.Client(
        base_url=sandbox.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}, timeout=10
    ) as c:
        yield c


def finished(http: httpx.Client, **payload) -> dict:
    task_id = http.post(GEN, json=payload).json()["data"]["task_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        task = http.get(f"{GEN}/{task_id}").json()["data"]
        if task["task_status"] == "succeed":
            return task
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} did not succeed")


def fetch(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)  # result URLs need no Authorization


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return img.size


@pytest.mark.parametrize(
    "model, ratio, resolution, megapixels",
    [
        ("kling-v1", "16:9", "1k", 1),
        ("kling-v1", "3:4", "1k", 1),
        ("kling-v2", "1:1", "2k", 4),
        ("kling-v2", "21:9", "2k", 4),
    ],
)
def test_image_size_follows_ratio_and_resolution(http, model, ratio, resolution, megapixels):
    task = finished(http, model_name=model, prompt="a lighthouse", aspect_ratio=ratio, resolution=resolution)
    answer = fetch(task["task_result"]["images"][0]["url"])
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    width, height = png_size(answer.content)
    assert width % 8 == 0 and height % 8 == 0
    assert 0.9 * megapixels <= width * height / 1024**2 <= 1.1 * megapixels
    w, h = (int(x) for x in ratio.split(":"))
    assert abs(width / height - w / h) < 0.02


def test_16_9_at_1k_is_about_1344_by_768(http):
    task = finished(http, prompt="a road", aspect_ratio="16:9")
    width, height = png_size(fetch(task["task_result"]["images"][0]["url"]).content)
    assert height == 768 and 1328 <= width <= 1376


def test_restyle_keeps_the_input_size(http):
    source = io.BytesIO()
    Image.new("RGB", (640, 480), "teal").save(source, format="PNG")
    task = finished(
        http, model_name="kling-v2", prompt="as a watercolour", image=base64.b64encode(source.getvalue()).decode()
    )
    assert png_size(fetch(task["task_result"]["images"][0]["url"]).content) == (640, 480)
    by_url = finished(
        http, model_name="kling-v2-new", prompt="as ink", image="https://example.com/p.png", aspect_ratio="1:1"
    )
    assert png_size(fetch(by_url["task_result"]["images"][0]["url"]).content) == (1024, 1024)


def test_same_prompt_and_index_give_the_same_bytes(http):
    first = finished(http, prompt="a quiet harbour", n=2, aspect_ratio="1:1")
    second = finished(http, prompt="a quiet harbour", n=1, aspect_ratio="1:1")
    a0, a1 = (fetch(i["url"]).content for i in first["task_result"]["images"])
    b0 = fetch(second["task_result"]["images"][0]["url"]).content
    assert a0 == b0 == fetch(first["task_result"]["images"][0]["url"]).content
    assert a0 != a1
    other = finished(http, prompt="a loud harbour", aspect_ratio="1:1")
    assert fetch(other["task_result"]["images"][0]["url"]).content != a0


def test_images_expire_30_days_after_the_task_was_created(sandbox, http):
    task = finished(http, prompt="a glacier", aspect_ratio="1:1")
    url = task["task_result"]["images"][0]["url"]
    sandbox.state.clock.advance(29 * DAY)
    assert fetch(url).status_code == 200
    sandbox.state.clock.advance(1 * DAY)
    assert fetch(url).status_code == 404


def test_unknown_or_unfinished_images_are_not_found():
    with Sandbox(SandboxConfig(submitted_seconds=100, processing_seconds=100)) as sb:
        with httpx.Client(base_url=sb.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}) as http:
            task_id = http.post(GEN, json={"prompt": "x", "n": 2}).json()["data"]["task_id"]
            assert fetch(f"{sb.base_url}/images/{task_id}/0.png").status_code == 404
            sb.state.clock.advance(200)
            assert fetch(f"{sb.base_url}/images/{task_id}/1.png").status_code == 200
            for path in (f"{task_id}/2.png", f"{task_id}/x.png", "123/0.png", f"{task_id}/0.jpg"):
                assert fetch(f"{sb.base_url}/images/{path}").status_code == 404
        assert sb.state.counters()["image"] == 6
