"""Retries under injected faults, and creates that never bill twice."""

from __future__ import annotations

import asyncio

import pytest

from kling_tui.api.auth import JwtAuth
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import KlingError, NetworkError
from kling_tui.api.types import GenerationRequest
from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY


def make_client(sandbox, **options) -> KlingClient:
    options = {"backoff": 0.01, "max_backoff": 0.05, "busy_backoff": 0.05, **options}
    return KlingClient(sandbox.base_url, JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY), **options)


@pytest.fixture
async def client(sandbox):
    async with make_client(sandbox) as c:
        yield c


# -- reads -----------------------------------------------------------------------------------

READ_FAULTS = [
    {"kind": "error", "code": 5000},
    {"kind": "error", "code": 5001},
    {"kind": "error", "code": 5002},
    {"kind": "error", "code": 1302},
    {"kind": "drop"},
    {"kind": "malformed"},
]


@pytest.mark.parametrize("fault", READ_FAULTS, ids=lambda f: str(f.get("code", f["kind"])))
async def test_reads_are_retried_through_transient_faults(sandbox, client, fault):
    task = await client.create(GenerationRequest(prompt="a kite"))
    sandbox.state.faults.add(endpoint="get", times=2, **fault)

    assert (await client.get(task.task_id)).task_id == task.task_id
    assert sandbox.state.counters()["get"] == 3
    assert client.stats.retries == 2


async def test_list_and_costs_are_retried_too(sandbox, client):
    sandbox.state.faults.add(endpoint="list", kind="drop", times=1)
    sandbox.state.faults.add(endpoint="costs", kind="error", code=5001, times=1)
    assert await client.list() == []
    assert len(await client.account_costs()) == 1
    counters = sandbox.state.counters()
    assert (counters["list"], counters["costs"]) == (2, 2)


async def test_a_slow_answer_times_out_and_is_retried(sandbox):
    sandbox.state.faults.add(endpoint="list", kind="latency", seconds=1.0, times=1)
    async with make_client(sandbox, timeout=0.2) as client:
        assert await client.list() == []
    assert sandbox.state.counters()["list"] == 2
    assert client.stats.retries == 1


async def test_retries_give_up_after_max_retries(sandbox):
    sandbox.state.faults.add(endpoint="get", kind="error", code=5001)
    async with make_client(sandbox, max_retries=2) as client:
        with pytest.raises(KlingError) as caught:
            await client.get("anything")
    assert (caught.value.code, caught.value.http_status, caught.value.retryable) == (5001, 503, True)
    assert sandbox.state.counters()["get"] == 3


async def test_a_persistently_cut_answer_is_a_network_error(sandbox):
    sandbox.state.faults.add(endpoint="list", kind="malformed")
    async with make_client(sandbox, max_retries=1) as client:
        with pytest.raises(NetworkError) as caught:
            await client.list()
    assert caught.value.maybe_sent is True
    assert caught.value.code is None


async def test_refusals_are_not_retried(sandbox, client):
    sandbox.state.faults.add(endpoint="get", kind="error", code=1102)
    with pytest.raises(KlingError) as caught:
        await client.get("anything")
    assert (caught.value.code, caught.value.http_status) == (1102, 429)
    assert sandbox.state.counters()["get"] == 1


async def test_an_unreachable_server_is_a_network_error_not_sent(sandbox):
    async with KlingClient(
        "http://127.0.0.1:9", JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY), max_retries=0
    ) as client:
        with pytest.raises(NetworkError) as caught:
            await client.list()
    assert caught.value.maybe_sent is False
    assert DEFAULT_SECRET_KEY not in str(caught.value)


# -- creates ---------------------------------------------------------------------------------


async def test_created_but_answered_5002_returns_the_existing_task(sandbox, client):
    sandbox.state.faults.add(endpoint="create", kind="created_5002", times=1)
    request = GenerationRequest(prompt="a bridge at dusk")
    task = await client.create(request)

    assert task.external_task_id == request.external_task_id
    counters = sandbox.state.counters()
    assert counters["tasks_created"] == 1
    assert counters["external_id_reuse"] == 0
    assert (counters["create"], counters["get"]) == (1, 1)
    assert (client.stats.lookups, client.stats.recoveries, client.stats.resends) == (1, 1, 0)


async def test_a_cut_create_answer_is_looked_up_not_re_sent(sandbox, client):
    sandbox.state.faults.add(endpoint="create", kind="malformed", times=1)
    task = await client.create(GenerationRequest(prompt="a meadow"))
    assert (await client.get(task.task_id)).task_id == task.task_id
    counters = sandbox.state.counters()
    assert (counters["tasks_created"], counters["create"], counters["external_id_reuse"]) == (1, 1, 0)


@pytest.mark.parametrize(
    "fault",
    [{"kind": "drop"}, {"kind": "error", "code": 5000}, {"kind": "error", "code": 5002}],
    ids=["drop", "5000", "5002"],
)
async def test_unclear_create_not_done_is_looked_up_then_re_sent(sandbox, client, fault):
    sandbox.state.faults.add(endpoint="create", times=1, **fault)
    task = await client.create(GenerationRequest(prompt="a harbour"))

    assert task.task_status == "submitted"
    counters = sandbox.state.counters()
    assert counters["tasks_created"] == 1
    assert counters["external_id_reuse"] == 0
    assert (counters["create"], counters["get"]) == (2, 1)  # sent, looked up (not found), sent again
    assert (client.stats.lookups, client.stats.recoveries, client.stats.resends) == (1, 0, 1)


async def test_create_timeout_is_looked_up_before_re_sending(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="latency", seconds=1.0, times=1)
    async with make_client(sandbox, timeout=0.3) as client:
        task = await client.create(GenerationRequest(prompt="a lantern"))
        assert (await client.get(task.external_task_id)).task_id == task.task_id
    assert client.stats.lookups == 1 and client.stats.resends == 1
    assert sandbox.state.counters()["tasks_created"] == 1


async def test_lookup_is_retried_like_a_read(sandbox, client):
    sandbox.state.faults.add(endpoint="create", kind="created_5002", times=1)
    sandbox.state.faults.add(endpoint="get", kind="error", code=5001, times=2)
    await client.create(GenerationRequest(prompt="a pier"))
    counters = sandbox.state.counters()
    assert (counters["tasks_created"], counters["create"], counters["get"]) == (1, 1, 3)


@pytest.mark.parametrize("code", [1302, 5001])
async def test_create_refused_as_busy_is_re_sent_without_lookup(sandbox, client, code):
    sandbox.state.faults.add(endpoint="create", kind="error", code=code, times=2)
    await client.create(GenerationRequest(prompt="a quay"))
    counters = sandbox.state.counters()
    assert (counters["create"], counters["get"], counters["tasks_created"]) == (3, 0, 1)
    assert client.stats.resends == 2


async def test_over_the_concurrency_limit_waits_for_free_slots(sandbox):
    async with make_client(sandbox, max_retries=20) as client:
        await client.create(GenerationRequest(prompt="nine at once", n=9))  # every slot of the pack
        task = await client.create(GenerationRequest(prompt="one more"))
    assert task.task_status == "submitted"
    counters = sandbox.state.counters()
    assert counters["over_concurrency"] >= 1
    assert counters["tasks_created"] == 2
    assert counters["get"] == 0  # 1303 means "not created": no lookup needed


async def test_over_the_concurrency_limit_gives_up_after_max_retries(sandbox):
    async with make_client(sandbox, max_retries=1) as client:
        await client.create(GenerationRequest(prompt="nine at once", n=9))
        sandbox.state.faults.add(endpoint="create", kind="error", code=1303)
        with pytest.raises(KlingError) as caught:
            await client.create(GenerationRequest(prompt="one more"))
    assert (caught.value.code, caught.value.http_status, caught.value.retryable) == (1303, 429, True)
    assert sandbox.state.counters()["tasks_created"] == 1


async def test_an_unclear_create_that_stays_unclear_raises(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=5000)
    async with make_client(sandbox, max_retries=1) as client:
        request = GenerationRequest(prompt="a dock")
        with pytest.raises(KlingError) as caught:
            await client.create(request)
    assert caught.value.code == 5000
    counters = sandbox.state.counters()
    assert counters["create"] == 2 and counters["get"] == 2  # every re-send preceded by a lookup
    assert counters["tasks_created"] == 0
    assert request.external_task_id  # kept, so the caller can reconcile later


async def test_a_create_queued_again_after_an_unclear_attempt_finds_its_task(sandbox):
    # A slow create the client gave up on is still handled; its re-send meets 1303 and the
    # caller queues the task again. The next create() must find it, not call it "not created".
    sandbox.state.faults.add(endpoint="create", kind="latency", seconds=0.6, times=1)
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303, times=1)
    request = GenerationRequest(prompt="a lighthouse")
    async with make_client(sandbox, timeout=0.2) as client:
        client.retry_busy_creates = False
        with pytest.raises(KlingError) as caught:
            await client.create(request)
        assert caught.value.code == 1303

        async def created() -> None:
            while sandbox.state.counters()["tasks_created"] == 0:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(created(), timeout=10)
        task = await client.create(request)

    assert task.external_task_id == request.external_task_id
    counters = sandbox.state.counters()
    assert counters["tasks_created"] == 1
    assert client.stats.recoveries == 1
