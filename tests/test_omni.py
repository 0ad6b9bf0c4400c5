"""Omni image and expansion: the rules before sending, the client over loopback, what the sandbox draws,
and the shared loop (slots, queue, recovery, downloads) for the new kinds."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import pytest
from PIL import Image

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.capabilities import default_capabilities, load_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import InvalidRequest
from kling_tui.api.types import ExpandRequest, GenerationRequest, OmniRequest, request_from_params
from kling_tui.api.validation import validate_generation, validate_omni
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.work.budget import SlotBudget
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench

CAPS = default_capabilities()
URL = "https://example.com/ref.png"


def png(path, size=(400, 400), colour=(30, 200, 60), halves=None):
    """A PNG file; with `halves`, its left half one colour and its right half another."""
    img = Image.new("RGB", size, colour)
    if halves:
        left, right = halves
        img.paste(left, (0, 0, size[0] // 2, size[1]))
        img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    img.save(path)
    return str(path)


@pytest.fixture
async def client(sandbox):
    async with KlingClient(sandbox.base_url, ApiKeyAuth(DEFAULT_API_KEY), backoff=0.01, max_backoff=0.05) as c:
        yield c


async def finished(sandbox, client, task, kind):
    sandbox.state.clock.advance(1)
    done = await client.get(task.task_id, kind=kind)
    assert done.task_status == "succeed"
    return done


def fetch_image(url: str) -> Image.Image:
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200
    return Image.open(io.BytesIO(answer.content)).convert("RGB")


def problems_of(request) -> dict[str, str]:
    return {p.field: p.rule for p in request.problems(CAPS)}


# -- the rules -----------------------------------------------------------------------------------


def test_a_plain_omni_request_is_valid_and_defaults_to_kling_image_o1():
    request = OmniRequest(prompt="a lighthouse, watercolour")
    payload, problems = request.build(CAPS)
    assert problems == []
    assert "model_name" not in payload and CAPS.default_for("omni-image") == "kling-image-o1"


def test_at_most_ten_images_and_elements_together():
    request = OmniRequest(prompt="a crowd", images=[URL] * 7, elements=["e1", "e2", "e3", "e4"])
    assert "at most 10 (got 7 + 4)" in problems_of(request)["image_list"]
    assert OmniRequest(prompt="a crowd", images=[URL] * 6, elements=["e1", "e2", "e3", "e4"]).problems(CAPS) == []


def test_every_image_reference_in_the_prompt_points_at_a_given_image():
    request = OmniRequest(prompt="the cat from <<<image_1>>> on the sofa of <<<image_3>>>", images=[URL, URL])
    assert problems_of(request) == {"prompt": "<<<image_3>>> refers to no image (2 given)"}
    elements = OmniRequest(prompt="<<<element_2>>> waves", elements=["e1"])
    assert problems_of(elements) == {"prompt": "<<<element_2>>> refers to no element (1 given)"}


def test_images_never_referred_to_are_a_warning_not_an_error():
    request = OmniRequest(prompt="restyle <<<image_2>>> as ink", images=[URL, URL, URL])
    assert request.problems(CAPS) == []
    assert request.warnings() == ["prompt: never refers to <<<image_1>>>, <<<image_3>>> (the model may still use them)"]
    assert OmniRequest(prompt="<<<image_1>>> at night", images=[URL]).warnings() == []


def test_4k_and_series_only_where_the_model_has_them():
    four_k = OmniRequest(prompt="a city", model_name="kling-image-o1", resolution="4k")
    assert problems_of(four_k) == {"resolution": "kling-image-o1 supports 1k, 2k (got '4k')"}
    assert OmniRequest(prompt="a city", model_name="kling-v3-omni", resolution="4k").problems(CAPS) == []

    series = OmniRequest(prompt="a story", model_name="kling-image-o1", result_type="series", series_amount=3)
    assert problems_of(series) == {"result_type": "series is available on kling-v3-omni (not kling-image-o1)"}
    ok = OmniRequest(prompt="a story", model_name="kling-v3-omni", result_type="series", series_amount=3)
    assert ok.problems(CAPS) == []


@pytest.mark.parametrize(
    "changes, field, rule",
    [
        ({"series_amount": 10}, "series_amount", "must be from 2 to 9 (got 10)"),
        ({"n": 3}, "n", "must be 1 with result_type 'series' (series_amount sets how many images)"),
        ({"result_type": "album"}, "result_type", "must be 'single' or 'series' (got 'album')"),
        ({"aspect_ratio": "5:4"}, "aspect_ratio", "kling-v3-omni supports auto, 16:9"),
    ],
)
def test_series_and_ratio_rules_name_the_field(changes, field, rule):
    base = dict(prompt="a story", model_name="kling-v3-omni", result_type="series", series_amount=4)
    found = problems_of(OmniRequest(**{**base, **changes}))
    assert field in found and found[field].startswith(rule)


def test_each_image_follows_the_file_rules(tmp_path):
    small = png(tmp_path / "small.png", (200, 200))
    request = OmniRequest(prompt="<<<image_1>>> <<<image_2>>>", images=[URL, small])
    assert problems_of(request) == {"image_list[1]": "image must be at least 300 px on each side (got 200x200)"}
    missing = OmniRequest(prompt="<<<image_1>>>", images=[str(tmp_path / "gone.png")])
    assert problems_of(missing)["image_list[0]"].startswith("file not found")


def test_the_endpoints_a_model_serves_are_data():
    assert validate_generation({"prompt": "x", "model_name": "kling-image-o1"}, CAPS)[0].rule.startswith(
        "/v1/images/generations serves kling-v1"
    )
    assert validate_omni({"prompt": "x", "model_name": "kling-v1"}, CAPS)[0].rule == (
        "/v1/images/omni-image serves kling-image-o1, kling-v3-omni (not kling-v1)"
    )
    caps = load_capabilities(
        {"models": {"house": {"endpoints": ["omni-image"], "series": True, "aspect_ratios": ["auto", "1:1"]}}}
    )
    assert validate_omni({"prompt": "x", "model_name": "house", "result_type": "series"}, caps) == []
    assert validate_generation({"prompt": "x", "model_name": "house"}, caps)
    # The older `multi_image` switch and `endpoints` always agree.
    multi = load_capabilities({"models": {"kling-v1": {"multi_image": True}}}).get("kling-v1")
    assert multi is not None and multi.endpoints == ("generations", "multi-image2image")
    assert all(CAPS.get(m).serves("generations") for m in ("kling-v1", "kling-v1-5", "kling-v2", "kling-v3"))


def test_expansion_ratios_and_area_are_checked_before_sending():
    assert ExpandRequest(image=URL, left_expansion_ratio=0.5, right_expansion_ratio=0.5).problems() == []
    assert {p.field: p.rule for p in ExpandRequest(image=URL, up_expansion_ratio=2.5).problems()} == {
        "up_expansion_ratio": "must be from 0 to 2 (got 2.5)"
    }
    too_big = ExpandRequest(image=URL, left_expansion_ratio=1, up_expansion_ratio=0.6)
    assert [str(p) for p in too_big.problems()] == [
        "expansion_ratio: the new image may be at most 3x the original's area: "
        "(1 + left + right) x (1 + up + down) = 3.20"
    ]
    assert {p.field for p in ExpandRequest(image="", prompt="x" * 2501).problems()} == {"image", "prompt"}


def test_recorded_params_rebuild_the_same_request():
    omni = OmniRequest(prompt="<<<image_1>>>", images=[URL], model_name="kling-v3-omni", resolution="2k", n=2)
    again = request_from_params("omni", omni.params())
    assert isinstance(again, OmniRequest) and again.build(CAPS)[0] == omni.build(CAPS)[0]
    expand = ExpandRequest(image=URL, down_expansion_ratio=1.0, prompt="more sky")
    assert request_from_params("expand", expand.params()).build()[0] == expand.build()[0]


# -- the client and the sandbox over loopback ------------------------------------------------------


async def test_omni_create_get_by_external_id_and_list(sandbox, client, tmp_path):
    photo = png(tmp_path / "photo.png")
    request = OmniRequest(prompt="<<<image_1>>> as a woodcut", images=[photo], n=2, external_task_id="omni-1")
    task = await client.create(request)
    assert task.task_status == "submitted"
    sent = sandbox.state.task(task.task_id)
    assert sent is not None and sent.payload["image_list"][0]["image"].startswith("iVBOR")  # raw base64 PNG

    done = await finished(sandbox, client, task, "omni")
    assert [i.index for i in done.images] == [0, 1] and done.result_type == "single"
    assert (await client.get("omni-1", kind="omni")).task_id == task.task_id
    assert [t.task_id for t in await client.list(kind="omni")] == [task.task_id]
    assert await client.list(kind="generation") == []  # each endpoint lists its own tasks


async def test_the_sandbox_refuses_what_the_rules_refuse_with_klings_code(sandbox):
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}) as http:
        answer = http.post("/v1/images/omni-image", json={"prompt": "<<<image_2>>>", "image_list": [{"image": URL}]})
        assert answer.status_code == 400 and answer.json()["code"] == 1201
        assert "<<<image_2>>> refers to no image" in answer.json()["message"]
        answer = http.post("/v1/images/editing/expand", json={"image": URL, "up_expansion_ratio": 1})
        assert answer.json()["code"] == 1200 and "down_expansion_ratio: is required" in answer.json()["message"]


async def test_an_edit_visibly_derives_from_its_first_input(sandbox, client, tmp_path):
    # Red on the left, blue on the right, 2:3: the edit keeps that layout and, with "auto", that ratio.
    photo = png(tmp_path / "split.png", (400, 600), halves=((220, 20, 20), (20, 20, 220)))
    task = await client.create(OmniRequest(prompt="<<<image_1>>> in neon", images=[photo]))
    done = await finished(sandbox, client, task, "omni")
    img = fetch_image(done.images[0].url)
    width, height = img.size
    assert abs(width / height - 2 / 3) < 0.02 and 0.9e6 < width * height < 1.2e6
    left, right = img.getpixel((width // 4, height // 2)), img.getpixel((3 * width // 4, height // 2))
    assert left[0] > left[2] + 60 and right[2] > right[0] + 60


@pytest.mark.parametrize(
    "ratio, resolution, expected", [("16:9", "2k", 16 / 9), ("1:1", "1k", 1.0), ("auto", "1k", 1.0)]
)
async def test_sizes_follow_resolution_and_aspect_ratio(sandbox, client, ratio, resolution, expected):
    request = OmniRequest(prompt="a harbour", model_name="kling-v3-omni", aspect_ratio=ratio, resolution=resolution)
    done = await finished(sandbox, client, await client.create(request), "omni")
    width, height = fetch_image(done.images[0].url).size
    megapixels = {"1k": 1024 * 1024, "2k": 2048 * 2048}[resolution]
    assert abs(width / height - expected) < 0.02 and 0.9 * megapixels < width * height < 1.1 * megapixels


async def test_a_series_returns_series_amount_images_that_belong_together(sandbox, client):
    request = OmniRequest(prompt="a fox's day", model_name="kling-v3-omni", result_type="series", series_amount=3)
    done = await finished(sandbox, client, await client.create(request), "omni")
    assert done.result_type == "series" and [i.index for i in done.images] == [0, 1, 2]
    images = [fetch_image(i.url) for i in done.images]
    assert len({img.size for img in images}) == 1
    width, height = images[0].size
    # One palette: the strip along the bottom edge is the same in every image of the set...
    strip = [[img.getpixel((x, height - 1)) for x in range(0, width, width // 12)] for img in images]
    assert strip[0] == strip[1] == strip[2]
    # ...and each is its own picture.
    assert len({img.tobytes() for img in images}) == 3


async def test_where_result_type_sits_is_a_sandbox_setting(sandbox, client):
    sandbox.state.config.result_type_at = "task"
    request = OmniRequest(prompt="a story", model_name="kling-v3-omni", result_type="series", series_amount=2)
    done = await finished(sandbox, client, await client.create(request), "omni")
    assert done.result_type == "series"
    answer = sandbox.state.task(done.task_id).to_json()
    assert answer["result_type"] == "series" and "result_type" not in answer["task_result"]


async def test_an_expansion_places_the_original_inside_the_new_canvas(sandbox, client, tmp_path):
    photo = png(tmp_path / "green.png", (400, 300), colour=(30, 200, 60))
    request = ExpandRequest(image=photo, left_expansion_ratio=0.5, right_expansion_ratio=0.5, down_expansion_ratio=0.5)
    done = await finished(sandbox, client, await client.create(request), "expand")
    img = fetch_image(done.images[0].url)
    assert img.size == (800, 450)  # 400 x (1 + 0.5 + 0.5), 300 x (1 + 0 + 0.5)
    inside = img.getpixel((400, 150))  # the original sits at x 200..600, y 0..300
    assert all(abs(a - b) < 8 for a, b in zip(inside, (30, 200, 60), strict=True))
    for outside in ((100, 150), (700, 150), (400, 400)):  # left, right and below: the new area
        assert img.getpixel(outside) != inside


async def test_an_invalid_expansion_is_never_sent(sandbox, client):
    with pytest.raises(InvalidRequest) as caught:
        await client.create(ExpandRequest(image=URL, left_expansion_ratio=2, right_expansion_ratio=2))
    assert {p.field for p in caught.value.problems} == {"expansion_ratio"}
    assert sandbox.state.counters()["expand_create"] == 0


@pytest.mark.parametrize("kind, request_", [("omni", OmniRequest(prompt="a dam")), ("expand", ExpandRequest(URL, 1))])
async def test_an_ambiguous_create_is_looked_up_not_re_sent(sandbox, client, kind, request_):
    sandbox.state.faults.add(endpoint=f"{kind}_create", kind="created_5002", times=1)
    task = await client.create(request_)
    counters = sandbox.state.counters()
    assert (counters[f"{kind}_create"], counters[f"{kind}_get"], counters["tasks_created"]) == (1, 1, 1)
    assert client.stats.recoveries == 1 and task.external_task_id == request_.external_task_id


# -- the shared loop ---------------------------------------------------------------------------------


async def wait_until(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def make_bench(sandbox, concurrency=9):
    client = KlingClient(sandbox.base_url, ApiKeyAuth(DEFAULT_API_KEY), backoff=0.01)
    tracker = Tracker(client, min_interval=0.02, max_interval=0.1)
    return Workbench(client, HistoryStore(), CAPS, tracker=tracker, budget=SlotBudget(concurrency))


async def test_a_series_holds_one_slot_per_image_in_the_local_queue(sandbox):
    sandbox.state.config.processing_seconds = 0.3
    bench = make_bench(sandbox, concurrency=5)
    follow = asyncio.create_task(bench.follow())
    try:
        series = bench.enqueue(
            OmniRequest(prompt="four panels", model_name="kling-v3-omni", result_type="series", series_amount=4)
        )
        second = bench.enqueue(GenerationRequest(prompt="two more", n=2))
        await wait_until(lambda: bench.store.get(series.local_id).task_id is not None)
        assert bench.slots_in_use == 4
        assert bench.store.get(second.local_id).status == "queued"  # 4 + 2 > 5: it waits
        await wait_until(lambda: bench.store.get(second.local_id).status == "succeed")
        record = await bench.save_images(bench.store.get(series.local_id))
        assert record.status == "succeed" and record.image_paths == [f"image-{i}.png" for i in (1, 2, 3, 4)]
    finally:
        follow.cancel()
        await bench.aclose()
        await bench.client.aclose()


async def test_expansion_goes_through_the_workbench_like_any_task(sandbox, tmp_path):
    photo = png(tmp_path / "p.png")
    bench = make_bench(sandbox)
    follow = asyncio.create_task(bench.follow())
    try:
        record = await bench.submit(ExpandRequest(image=photo, up_expansion_ratio=0.5, n=2))
        assert record.kind == "expand" and record.task_id is not None and record.slots == 2
        await wait_until(lambda: bench.store.get(record.local_id).status == "succeed")
        saved = await bench.save_images(bench.store.get(record.local_id))
        assert len(saved.image_paths) == 2
        with Image.open(bench.store.task_dir(record.local_id) / saved.image_paths[0]) as img:
            assert img.size == (400, 600)
    finally:
        follow.cancel()
        await bench.aclose()
        await bench.client.aclose()


async def test_an_unanswered_omni_create_is_settled_by_its_external_id_on_restart(sandbox):
    bench = make_bench(sandbox)
    request = OmniRequest(prompt="a glacier", n=3)
    record = bench.record(request)  # written, then the app died before the answer
    await bench.client.create(request)  # ...but the server did create it
    await bench.client.aclose()

    restarted = make_bench(sandbox)
    try:
        await restarted.reconcile()
        found = restarted.store.get(record.local_id)
        assert found.task_id is not None and found.kind == "omni"
        assert restarted.slots_in_use == 3
        assert sandbox.state.counters()["omni_create"] == 1
    finally:
        await restarted.aclose()
        await restarted.client.aclose()


def test_the_sandbox_command_sets_where_result_type_sits():
    import argparse

    from kling_tui.sandbox.cli import add_arguments, config_from

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from(parser.parse_args([])).result_type_at == "task_result"
    assert config_from(parser.parse_args(["--result-type-at", "task"])).result_type_at == "task"
    with pytest.raises(SystemExit):
        parser.parse_args(["--result-type-at", "elsewhere"])
