"""The client's calls over loopback: create, query, list, paging, costs, validation and error mapping."""

from __future__ import annotations

import pytest
from PIL import Image

from kling_tui.api.auth import JwtAuth
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import CODES, InvalidRequest, KlingError
from kling_tui.api.types import GenerationRequest, MultiImageRequest
from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY


@pytest.fixture
async def client(sandbox):
    auth = JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    async with KlingClient(sandbox.base_url, auth, backoff=0.01, max_backoff=0.05) as c:
        yield c


def api_requests(sandbox) -> int:
    counters = sandbox.state.counters()
    return sum(counters[k] for k in ("create", "get", "list", "multi_create", "multi_get", "multi_list", "costs"))


async def test_create_then_query_until_the_images_are_there(sandbox, client):
    request = GenerationRequest(prompt="a red bicycle in the rain", n=2, aspect_ratio="1:1")
    task = await client.create(request)

    assert task.task_status == "submitted"
    assert task.task_id.isdigit() and len(task.task_id) == 18
    assert request.external_task_id and task.external_task_id == request.external_task_id

    sandbox.state.clock.advance(1)
    done = await client.get(task.task_id)
    assert done.task_status == "succeed"
    assert [img.index for img in done.images] == [0, 1]
    assert all(img.url.startswith(sandbox.base_url) for img in done.images)
    assert done.final_unit_deduction is not None


async def test_a_task_is_found_by_its_external_id(client):
    request = GenerationRequest(prompt="a fox", external_task_id="my-own-id-1")
    task = await client.create(request)
    assert request.external_task_id == "my-own-id-1"  # the caller's id is kept
    assert (await client.get("my-own-id-1")).task_id == task.task_id


async def test_prepare_assigns_the_external_id_before_create(sandbox, client):
    request = GenerationRequest(prompt="a heron")
    recorded = client.prepare(request)  # what a caller writes down before sending
    assert len(recorded) == 32
    task = await client.create(request)
    assert task.external_task_id == recorded
    assert client.prepare(request) == recorded  # stable


async def test_failed_task_carries_its_reason(sandbox, client):
    task = await client.create(GenerationRequest(prompt="a storm #fail"))
    sandbox.state.clock.advance(1)
    failed = await client.get(task.task_id)
    assert failed.task_status == "failed"
    assert failed.task_status_msg
    assert failed.images == []


async def test_multi_image_create_query_and_list(sandbox, client, tmp_path):
    subject = tmp_path / "subject.png"
    Image.new("RGB", (400, 400), (200, 40, 40)).save(subject)
    request = MultiImageRequest(subject_images=[str(subject)], prompt="the subject on a beach", model_name="kling-v2")
    task = await client.create(request)

    sandbox.state.clock.advance(1)
    assert (await client.get(task.task_id, kind="multi")).task_status == "succeed"
    assert [t.task_id for t in await client.list(kind="multi")] == [task.task_id]
    assert await client.list(kind="generation") == []
    assert sandbox.state.counters()["multi_create"] == 1


async def test_invalid_request_raises_before_anything_is_sent(sandbox, client):
    request = GenerationRequest(prompt="", n=12, aspect_ratio="5:1")
    with pytest.raises(InvalidRequest) as caught:
        await client.create(request)

    fields = {p.field for p in caught.value.problems}
    assert {"prompt", "n", "aspect_ratio"} <= fields
    assert "n:" in str(caught.value)
    assert api_requests(sandbox) == 0
    assert sandbox.state.counters()["tasks_created"] == 0


async def test_missing_local_image_is_caught_locally(sandbox, client, tmp_path):
    request = GenerationRequest(
        prompt="x", model_name="kling-v1-5", image=str(tmp_path / "nope.png"), image_reference="subject"
    )
    with pytest.raises(InvalidRequest, match="image: file not found"):
        await client.create(request)
    assert api_requests(sandbox) == 0


async def test_list_pages_until_a_short_page(sandbox, client):
    created = [await client.create(GenerationRequest(prompt=f"tile {i}")) for i in range(5)]
    newest_first = [t.task_id for t in reversed(created)]

    before = sandbox.state.counters()["list"]
    assert [t.task_id for t in await client.list_all(page_size=2)] == newest_first
    assert sandbox.state.counters()["list"] - before == 3  # 2 + 2 + 1 (short)

    before = sandbox.state.counters()["list"]
    assert len(await client.list_all(page_size=5)) == 5
    assert sandbox.state.counters()["list"] - before == 2  # a full page needs one more, empty, page

    assert [t.task_id for t in await client.list(page=2, page_size=2)] == newest_first[2:4]


async def test_list_all_stops_at_max_pages(sandbox, client):
    for i in range(3):
        await client.create(GenerationRequest(prompt=f"tile {i}"))
    assert len(await client.list_all(page_size=1, max_pages=2)) == 2


async def test_account_costs_lists_the_resource_pack(sandbox, client):
    task = await client.create(GenerationRequest(prompt="a tree", n=3))
    sandbox.state.clock.advance(1)
    await client.get(task.task_id)

    packs = await client.account_costs()
    assert len(packs) == 1
    pack = packs[0]
    assert pack.status == "online"
    assert pack.total == 1000
    assert pack.remaining == pack.total - float((await client.get(task.task_id)).final_unit_deduction)


async def test_unknown_task_is_1201_with_the_server_message_verbatim(sandbox, client):
    with pytest.raises(KlingError) as caught:
        await client.get("no-such-task")
    err = caught.value
    assert (err.http_status, err.code, err.retryable) == (400, 1201, False)
    assert err.message == "Task not found by id/external id: no-such-task"
    assert err.request_id
    assert sandbox.state.counters()["get"] == 1  # not retried


async def test_ids_cannot_escape_the_task_path(sandbox, client):
    with pytest.raises(KlingError) as caught:
        await client.get("../../account/costs")
    assert caught.value.code in (1201, 1203)  # an unknown task or an unknown path, never another endpoint
    assert sandbox.state.counters()["costs"] == 0


async def test_server_refusals_of_a_create_are_not_retried(sandbox, client):
    with pytest.raises(KlingError) as caught:
        await client.create(GenerationRequest(prompt="something #block"))
    assert (caught.value.code, caught.value.http_status) == (1301, 400)
    counters = sandbox.state.counters()
    assert counters["create"] == 1 and counters["get"] == 0


async def test_reused_external_id_is_refused(sandbox, client):
    await client.create(GenerationRequest(prompt="a", external_task_id="same"))
    with pytest.raises(KlingError) as caught:
        await client.create(GenerationRequest(prompt="b", external_task_id="same"))
    assert caught.value.code == 1201
    assert sandbox.state.counters()["tasks_created"] == 1


def expected_retryable(code: int, *, is_read: bool) -> bool:
    policy = CODES[code].retry
    return policy == "yes" or (policy == "reads" and is_read) or policy == "resign"


async def test_every_error_code_maps_to_a_kling_error(sandbox):
    auth = JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    async with KlingClient(sandbox.base_url, auth, max_retries=0) as client:
        for code, info in sorted(CODES.items()):
            sandbox.state.faults.clear()
            sandbox.state.faults.add(endpoint="get", kind="error", code=code)
            with pytest.raises(KlingError) as caught:
                await client.get("any")
            err = caught.value
            assert (err.code, err.http_status, err.message) == (code, info.http_status, info.meaning)
            assert err.request_id
            if code not in (1003, 1004):  # these are re-signed and sent once more instead
                assert err.retryable == expected_retryable(code, is_read=True), code
            assert str(code) in str(err)


async def test_base_url_must_be_http(sandbox):
    with pytest.raises(ValueError, match="http"):
        KlingClient("ftp://example.com", JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY))
