"""The sandbox's Kling surface over real loopback HTTP: examples of the spec, lifecycle, ids, paging, slots, costs."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from kling_tui.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

GEN = "/v1/images/generations"
MULTI = "/v1/images/multi-image2image"

# Every example body of kling-image-api.md, with the units it should cost: the price table in
# models.toml (USD per image by model, use and resolution) at 1 unit = 0.0035 USD.
DOC_EXAMPLES = {
    "basic": (
        {
            "model_name": "kling-v1",
            "prompt": "A futuristic cityscape at night with neon lights and flying cars",
            "n": 4,
            "aspect_ratio": "16:9",
            "resolution": "1k",
        },
        "4",
    ),
    "negative": (
        {
            "model_name": "kling-v1",
            "prompt": "Beautiful landscape with mountains and lake",
            "negative_prompt": "people, buildings, cars, text, watermark, blur, low quality",
            "n": 2,
            "aspect_ratio": "16:9",
        },
        "2",
    ),
    "subject": (
        {
            "model_name": "kling-v1-5",
            "prompt": "The person in a superhero costume flying through the sky",
            "image": "https://example.com/reference.jpg",
            "image_reference": "subject",
            "image_fidelity": 0.7,
            "human_fidelity": 0.5,
            "n": 2,
            "aspect_ratio": "16:9",
        },
        "16",  # kling-v1-5 with a subject reference: 0.028 USD an image
    ),
    "face": (
        {
            "model_name": "kling-v1-5",
            "prompt": "Portrait in Renaissance painting style",
            "image": "https://example.com/face.jpg",
            "image_reference": "face",
            "image_fidelity": 0.8,
            "n": 1,
            "aspect_ratio": "3:4",
        },
        "8",  # kling-v1-5 with a face reference: 0.028 USD
    ),
    "2k": (
        {
            "model_name": "kling-v2",
            "prompt": "Detailed macro photography of a butterfly wing",
            "n": 1,
            "aspect_ratio": "1:1",
            "resolution": "2k",
        },
        "4",
    ),
}


def wait_for(condition, timeout: float = 10.0, interval: float = 0.02):
    """Poll until `condition()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(interval)


def client_for(sb: Sandbox) -> httpx.Client:
    return httpx.Client(base_url=sb.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}, timeout=10)


@pytest.fixture
def http(sandbox):
    with client_for(sandbox) as client:
        yield client


@pytest.fixture
def slow():
    """Tasks that only move when the test moves the sandbox clock."""
    with Sandbox(SandboxConfig(submitted_seconds=100, processing_seconds=100, seed=7)) as sb:
        with client_for(sb) as client:
            yield sb, client


def assert_envelope(body: dict) -> None:
    assert body["code"] == 0
    assert body["message"] == "SUCCEED"
    assert re.fullmatch(r"[0-9a-f-]{36}", body["request_id"])


def assert_error(answer: httpx.Response, status: int, code: int) -> dict:
    body = answer.json()
    assert (answer.status_code, body["code"]) == (status, code), body
    assert "data" not in body
    assert body["request_id"] and body["message"]
    return body


def create(client: httpx.Client, path: str = GEN, **payload) -> dict:
    payload.setdefault("prompt", "a red fox in the snow")
    answer = client.post(path, json=payload)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def get(client: httpx.Client, ident: str, path: str = GEN) -> dict:
    answer = client.get(f"{path}/{ident}")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


@pytest.mark.parametrize("name", DOC_EXAMPLES)
def test_every_spec_example_gets_the_documented_answers(http, sandbox, name):
    payload, units = DOC_EXAMPLES[name]
    answer = http.post(GEN, json=payload)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_envelope(body)
    data = body["data"]
    assert set(data) == {"task_id", "task_status", "task_info", "created_at", "updated_at"}
    assert re.fullmatch(r"[1-9]\d{17}", data["task_id"])
    assert data["task_status"] == "submitted"
    assert isinstance(data["task_info"], dict)
    assert isinstance(data["created_at"], int) and data["created_at"] == data["updated_at"]

    done = wait_for(lambda: (t := get(http, data["task_id"]))["task_status"] == "succeed" and t)
    assert done["task_status_msg"] == ""
    assert done["final_unit_deduction"] == units
    assert done["created_at"] == data["created_at"] < done["updated_at"]
    images = done["task_result"]["images"]
    assert [i["index"] for i in images] == list(range(payload["n"]))
    assert all(i["url"] == f"{sandbox.base_url}/images/{data['task_id']}/{i['index']}.png" for i in images)


def test_lifecycle_follows_the_sandbox_clock(slow):
    sb, http = slow
    task = create(http, external_task_id="life-1")
    assert get(http, task["task_id"])["task_status"] == "submitted"
    assert "task_result" not in get(http, task["task_id"])
    sb.state.clock.advance(100)
    processing = get(http, task["task_id"])
    assert processing["task_status"] == "processing"
    assert processing["updated_at"] == task["created_at"] + 100_000
    assert "final_unit_deduction" not in processing
    sb.state.clock.advance(100)
    done = get(http, task["task_id"])
    assert done["task_status"] == "succeed"
    assert done["updated_at"] == task["created_at"] + 200_000
    assert done["task_info"] == {"external_task_id": "life-1"}


def test_fail_marker_fails_the_task_at_the_end_of_processing(slow):
    sb, http = slow
    task = create(http, prompt="a cat #fail", n=3)
    sb.state.clock.advance(150)
    assert get(http, task["task_id"])["task_status"] == "processing"
    sb.state.clock.advance(50)
    failed = get(http, task["task_id"])
    assert failed["task_status"] == "failed"
    assert failed["task_status_msg"] == "Failure requested by the prompt (#fail)"
    assert failed["final_unit_deduction"] == "0"
    assert "task_result" not in failed


def test_block_marker_is_refused_by_content_policy(http, sandbox):
    assert_error(http.post(GEN, json={"prompt": "something #block"}), 400, 1301)
    assert sandbox.state.counters()["tasks_created"] == 0


def test_validation_answers_the_first_problems_code_and_lists_all(http, sandbox):
    body = assert_error(http.post(GEN, json={"prompt": "x", "n": 12, "aspect_ratio": "5:1"}), 400, 1201)
    assert "n: must be from 1 to 9 (got 12)" in body["message"]
    assert "aspect_ratio: " in body["message"]
    assert_error(http.post(GEN, json={"n": 1}), 400, 1200)  # prompt missing: a shape problem
    assert_error(http.post(GEN, json={"prompt": "x", "model_name": "kling-v9"}), 404, 1203)
    body = assert_error(
        http.post(
            GEN,
            json={
                "prompt": "x",
                "model_name": "kling-v1-5",
                "image": "https://example.com/a.jpg",
                "image_reference": "face",
                "negative_prompt": "blur",
            },
        ),
        400,
        1201,
    )
    assert "negative_prompt: cannot be used together with a reference image" in body["message"]
    assert_error(http.post(GEN, content=b"{not json", headers={"content-type": "application/json"}), 400, 1200)
    assert_error(http.post(GEN, json=["a list"]), 400, 1200)
    counters = sandbox.state.counters()
    assert counters["invalid"] == 6
    assert counters["create"] == 6
    assert counters["tasks_created"] == 0


def test_slots_are_held_until_tasks_end_and_shared_by_both_endpoints(slow):
    sb, http = slow
    create(http, n=5)
    create(http, MULTI, model_name="kling-v2", subject_image_list=[{"subject_image": "https://example.com/s.png"}], n=4)
    assert sb.state.slots_in_use() == 9
    assert_error(http.post(GEN, json={"prompt": "one more", "n": 1}), 429, 1303)
    refused = assert_error(
        http.post(MULTI, json={"subject_image_list": [{"subject_image": "https://example.com/s.png"}]}), 429, 1303
    )
    assert refused["message"] == "parallel task over resource pack limit"
    assert sb.state.counters()["tasks_created"] == 2
    sb.state.clock.advance(200)
    create(http, n=9)  # everything ended: all slots are free again
    assert sb.state.slots_in_use() == 9


def test_slots_free_on_time_without_polling(sandbox_config):
    sandbox_config.slots = 2
    with Sandbox(sandbox_config) as sb, client_for(sb) as http:
        create(http, n=2)
        assert_error(http.post(GEN, json={"prompt": "x"}), 429, 1303)
        wait_for(lambda: http.post(GEN, json={"prompt": "x"}).status_code == 200)
        assert sb.state.counters()["over_concurrency"] >= 1


def test_external_task_id_finds_the_task_and_cannot_be_reused(http, sandbox):
    task = create(http, external_task_id="my-order-17")
    assert task["task_info"] == {"external_task_id": "my-order-17"}
    assert get(http, "my-order-17")["task_id"] == task["task_id"]
    assert get(http, task["task_id"])["task_id"] == task["task_id"]
    assert_error(http.post(GEN, json={"prompt": "again", "external_task_id": "my-order-17"}), 400, 1201)
    assert sandbox.state.counters()["external_id_reuse"] == 1
    unknown = assert_error(http.get(f"{GEN}/nope-42"), 400, 1201)
    assert unknown["message"] == "Task not found by id/external id: nope-42"
    # Each endpoint has its own tasks.
    assert_error(http.get(f"{MULTI}/{task['task_id']}"), 400, 1201)


def test_list_pages_newest_first_with_a_short_last_page(slow):
    _, http = slow
    ids = [create(http, prompt=f"task {i}")["task_id"] for i in range(7)]
    pages = [http.get(GEN, params={"pageNum": p, "pageSize": 3}).json()["data"] for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [t["task_id"] for p in pages for t in p] == ids[::-1]
    everything = http.get(GEN).json()
    assert_envelope(everything)
    assert [t["task_id"] for t in everything["data"]] == ids[::-1]
    assert http.get(MULTI).json()["data"] == []


@pytest.mark.parametrize(
    "params", [{"pageNum": 0}, {"pageNum": 1001}, {"pageSize": 0}, {"pageSize": 501}, {"pageNum": "two"}]
)
def test_list_bounds_are_enforced(http, params):
    assert_error(http.get(GEN, params=params), 400, 1201)


def test_list_bounds_inclusive(http):
    assert http.get(GEN, params={"pageNum": 1000, "pageSize": 500}).json()["data"] == []


def test_multi_image_task_runs_like_a_generation(http):
    task = create(
        http,
        MULTI,
        model_name="kling-v2-1",
        prompt="two friends",
        subject_image_list=[
            {"subject_image": "https://example.com/a.png"},
            {"subject_image": "https://example.com/b.png"},
        ],
        n=2,
        aspect_ratio="1:1",
        external_task_id="multi-1",
    )
    done = wait_for(lambda: (t := get(http, "multi-1", MULTI))["task_status"] == "succeed" and t)
    assert done["task_id"] == task["task_id"]
    assert done["final_unit_deduction"] == "16"  # kling-v2-1 multi-image: 0.028 USD an image
    assert len(done["task_result"]["images"]) == 2
    assert [t["task_id"] for t in http.get(MULTI).json()["data"]] == [task["task_id"]]
    assert_error(http.post(MULTI, json={"model_name": "kling-v2"}), 400, 1200)
    assert_error(
        http.post(
            MULTI,
            json={"model_name": "kling-v1", "subject_image_list": [{"subject_image": "https://example.com/a.png"}]},
        ),
        400,
        1201,
    )


def test_costs_report_the_pack_going_down_and_are_rate_limited(sandbox_config):
    sandbox_config.total_units = 10
    with Sandbox(sandbox_config) as sb, client_for(sb) as http:
        window = {"start_time": 0, "end_time": sb.state.clock.now_ms()}
        first = http.get("/account/costs", params=window).json()
        assert_envelope(first)
        pack = first["data"]["resource_pack_subscribe_infos"][0]
        assert (pack["total_quantity"], pack["remaining_quantity"], pack["status"]) == (10, 10, "online")
        assert_error(http.get("/account/costs", params=window), 429, 1302)

        task = create(http, model_name="kling-v2", n=2, resolution="2k")  # 8 units
        wait_for(lambda: get(http, task["task_id"])["task_status"] == "succeed")
        assert_error(http.post(GEN, json={"prompt": "x", "model_name": "kling-v2", "n": 2}), 429, 1102)
        sb.state.clock.advance(1.5)
        pack = http.get("/account/costs", params=window).json()["data"]["resource_pack_subscribe_infos"][0]
        assert pack["remaining_quantity"] == 2
        sb.state.clock.advance(1.5)
        assert_error(http.get("/account/costs", params={"start_time": 0}), 400, 1200)


def test_unknown_paths_and_methods_answer_in_kling_form(http):
    assert_error(http.get("/v1/videos"), 404, 1203)
    assert_error(http.delete(GEN), 404, 1202)


def test_a_capability_override_reaches_the_sandbox():
    from kling_tui.api.capabilities import load_capabilities

    caps = load_capabilities({"models": {"kling-v1": {"discontinued": True}}})
    with Sandbox(SandboxConfig(capabilities=caps)) as sb, client_for(sb) as http:
        body = assert_error(http.post(GEN, json={"prompt": "x", "model_name": "kling-v1"}), 404, 1203)
        assert "The model 'kling-v1' has been discontinued" in body["message"]
