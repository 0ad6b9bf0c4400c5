"""The local queue: n-weighted slots, 1303 re-queues, cancel, reorder, resume after restart."""

from __future__ import annotations

import asyncio
import time

import pytest

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.client import KlingClient
from kling_tui.api.types import GenerationRequest
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.work.budget import SlotBudget
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_drops_on_busy_and_recovers_one_slot_at_a_time():
    clock = FakeClock()
    budget = SlotBudget(9, recover_seconds=10, clock=clock)
    assert budget.fits(9, 0) and not budget.fits(1, 9)
    budget.busy(in_use=5)
    assert budget.budget == 5
    clock.now = 9.9
    assert budget.budget == 5
    clock.now = 10.0
    assert budget.budget == 6
    clock.now = 100
    assert budget.budget == 9
    assert budget.never_fits(10) and not budget.never_fits(9)


def test_busy_never_drops_the_budget_below_one():
    budget = SlotBudget(3, clock=FakeClock())
    budget.busy(in_use=0)
    assert budget.budget == 1


async def wait_until(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def make_bench(sandbox, concurrency=9, store=None):
    client = KlingClient(sandbox.base_url, ApiKeyAuth(DEFAULT_API_KEY), backoff=0.01)
    tracker = Tracker(client, min_interval=0.02, max_interval=0.1)
    return Workbench(
        client, store or HistoryStore(), client.caps or _caps(), tracker=tracker, budget=SlotBudget(concurrency)
    )


def _caps():
    from kling_tui.api.capabilities import default_capabilities

    return default_capabilities()


@pytest.fixture
def sandbox_config(sandbox_config):
    sandbox_config.slots = 4
    sandbox_config.processing_seconds = 0.3
    return sandbox_config


async def test_tasks_wait_locally_until_their_slots_fit(sandbox):
    bench = make_bench(sandbox, concurrency=4)
    follow = asyncio.create_task(bench.follow())
    try:
        records = [bench.enqueue(GenerationRequest(prompt=f"tile {i}", n=2)) for i in range(3)]
        await wait_until(lambda: bench.store.get(records[1].local_id).task_id is not None)
        assert bench.store.get(records[2].local_id).status == "queued"
        assert bench.slots_in_use == 4
        await wait_until(lambda: all(bench.store.get(r.local_id).status == "succeed" for r in records))
    finally:
        follow.cancel()
        await bench.aclose()
        await bench.client.aclose()
    counters = sandbox.state.counters()
    assert counters["tasks_created"] == 3 and counters["over_concurrency"] == 0


async def test_a_1303_requeues_lowers_the_budget_and_creates_nothing_twice(sandbox):
    bench = make_bench(sandbox, concurrency=9)  # the user thinks 9; the server has 4
    follow = asyncio.create_task(bench.follow())
    try:
        records = [bench.enqueue(GenerationRequest(prompt=f"wave {i}", n=2)) for i in range(4)]
        await wait_until(lambda: bench.budget.budget < 9)
        assert sandbox.state.counters()["over_concurrency"] >= 1
        await wait_until(lambda: all(bench.store.get(r.local_id).status == "succeed" for r in records), timeout=30)
    finally:
        follow.cancel()
        await bench.aclose()
        await bench.client.aclose()
    counters = sandbox.state.counters()
    assert counters["tasks_created"] == 4 and counters["external_id_reuse"] == 0


async def test_queued_tasks_can_be_cancelled_and_reordered(sandbox):
    bench = make_bench(sandbox, concurrency=2)
    try:
        first = bench.enqueue(GenerationRequest(prompt="holds both slots", n=2))
        a = bench.enqueue(GenerationRequest(prompt="a"))
        b = bench.enqueue(GenerationRequest(prompt="b"))
        c = bench.enqueue(GenerationRequest(prompt="c"))
        assert bench.queue == [a.local_id, b.local_id, c.local_id]
        assert bench.move(c.local_id, -2)
        assert bench.queue == [c.local_id, a.local_id, b.local_id]
        cancelled = bench.cancel(a.local_id)
        assert cancelled.status == "not_created" and "cancelled" in cancelled.status_msg
        assert bench.queue == [c.local_id, b.local_id]
        await wait_until(lambda: bench.store.get(first.local_id).task_id is not None)
    finally:
        await bench.aclose()
        await bench.client.aclose()
    assert sandbox.state.counters()["tasks_created"] == 1


async def test_the_queue_survives_a_restart_in_order(sandbox):
    bench = make_bench(sandbox, concurrency=1)
    try:
        bench.enqueue(GenerationRequest(prompt="running"))
        queued = [bench.enqueue(GenerationRequest(prompt=f"later {i}")) for i in range(3)]
        bench.move(queued[2].local_id, -2)
        order = list(bench.queue)
        await wait_until(lambda: bench.sending == 0)
    finally:
        await bench.aclose()
        await bench.client.aclose()
    # A new process: same history, fresh workbench.
    again = make_bench(sandbox, concurrency=1, store=HistoryStore())
    follow = asyncio.create_task(again.follow())
    try:
        await again.reconcile()
        await wait_until(lambda: all(again.store.get(i).status == "succeed" for i in order), timeout=30)
    finally:
        follow.cancel()
        await again.aclose()
        await again.client.aclose()
    submitted = [again.store.get(i).submitted_at for i in order]
    assert submitted == sorted(submitted)
    assert sandbox.state.counters()["tasks_created"] == 4


async def test_a_task_larger_than_the_pack_is_refused_locally(sandbox):
    bench = make_bench(sandbox, concurrency=2)
    try:
        record = await asyncio.wait_for(bench.submit(GenerationRequest(prompt="too wide", n=3)), 5)
    finally:
        await bench.aclose()
        await bench.client.aclose()
    assert record.status == "not_created" and "n=3" in record.status_msg
    assert sandbox.state.counters()["create"] == 0


async def test_an_unanswered_create_is_settled_without_a_restart(sandbox):
    bench = make_bench(sandbox, concurrency=9)
    bench.client.max_retries = 1
    sandbox.state.faults.add(endpoint="create", kind="created_5002", times=1)
    sandbox.state.faults.add(endpoint="get", kind="error", code=5000, times=20)
    try:
        record = await asyncio.wait_for(bench.submit(GenerationRequest(prompt="lost in the mail")), 10)
        assert record.status == "pending" and "not confirmed" in record.status_msg
        assert bench.slots_in_use == 1
        sandbox.state.faults.clear()
        await bench.confirm_unanswered()
    finally:
        await bench.aclose()
        await bench.client.aclose()
    settled = bench.store.get(record.local_id)
    assert settled.task_id is not None and settled.status in ("submitted", "processing", "succeed")
    assert sandbox.state.counters()["tasks_created"] == 1
