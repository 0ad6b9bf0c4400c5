"""The tracker: one list request per cycle for every task in flight, each change reported once."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from kling_tui.api.auth import JwtAuth
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import KlingError
from kling_tui.api.types import GenerationRequest, MultiImageRequest
from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, SandboxConfig
from kling_tui.work.tracker import StatusChange, Tracker

SUBMITTED_S, PROCESSING_S = 10.0, 10.0


@pytest.fixture
def sandbox_config():
    # Slow lifecycle moved by the sandbox clock, so every step is deterministic; room for 60 tasks.
    return SandboxConfig(slots=60, submitted_seconds=SUBMITTED_S, processing_seconds=PROCESSING_S, seed=7)


@pytest.fixture
async def client(sandbox):
    async with KlingClient(
        sandbox.base_url, JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY), backoff=0.01, max_backoff=0.05
    ) as c:
        yield c


def counts(sandbox, *keys: str) -> tuple[int, ...]:
    counters = sandbox.state.counters()
    return tuple(counters[k] for k in keys)


async def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_fifty_tasks_cost_one_list_request_per_cycle(sandbox, client):
    tracker = Tracker(client)
    tasks = [await client.create(GenerationRequest(prompt=f"frame {i}")) for i in range(50)]
    for task in tasks:
        tracker.track(task.task_id)
    assert tracker.in_flight == 50

    before = counts(sandbox, "list", "get")
    assert await tracker.poll_once() == []
    assert counts(sandbox, "list", "get") == (before[0] + 1, before[1])

    sandbox.state.clock.advance(SUBMITTED_S + 0.1)
    changes = await tracker.poll_once()
    assert {c.task.task_id for c in changes} == {t.task_id for t in tasks}
    assert all(c.previous_status == "submitted" and c.task.task_status == "processing" for c in changes)
    assert counts(sandbox, "list", "get") == (before[0] + 2, before[1])

    sandbox.state.clock.advance(PROCESSING_S)
    changes = await tracker.poll_once()
    assert len(changes) == 50
    assert all(c.previous_status == "processing" and c.task.task_status == "succeed" and c.task.images for c in changes)
    assert tracker.in_flight == 0  # finished tasks are untracked

    # Nothing in flight: a cycle sends nothing and reports nothing again.
    assert await tracker.poll_once() == []
    assert counts(sandbox, "list", "get") == (before[0] + 3, before[1])


async def test_tasks_missing_from_page_one_are_fetched_one_by_one(sandbox, client):
    tracker = Tracker(client, page_size=5)
    tasks = [await client.create(GenerationRequest(prompt=f"tile {i}")) for i in range(8)]
    for task in tasks:
        tracker.track(task.task_id)

    sandbox.state.clock.advance(SUBMITTED_S + 0.1)
    before = counts(sandbox, "list", "get")
    changes = await tracker.poll_once()
    assert len(changes) == 8
    # Page 1 holds the 5 newest; the 3 oldest are asked for by id.
    assert counts(sandbox, "list", "get") == (before[0] + 1, before[1] + 3)


async def test_each_change_is_reported_once_and_failures_carry_their_reason(sandbox, client):
    tracker = Tracker(client)
    ok = await client.create(GenerationRequest(prompt="fine"))
    bad = await client.create(GenerationRequest(prompt="doomed #fail"))
    tracker.track(ok.task_id)
    tracker.track(bad.task_id)

    seen: list[StatusChange] = []
    sandbox.state.clock.advance(SUBMITTED_S + PROCESSING_S + 1)
    seen += await tracker.poll_once()
    seen += await tracker.poll_once()

    by_id = {c.task.task_id: c for c in seen}
    assert len(seen) == 2
    assert by_id[ok.task_id].task.task_status == "succeed"
    assert by_id[bad.task_id].task.task_status == "failed"
    assert by_id[bad.task_id].task.task_status_msg
    assert all(c.previous_status == "submitted" and c.kind == "generation" for c in seen)


async def test_a_task_tracked_by_its_external_id_is_found_in_the_list(sandbox, client):
    tracker = Tracker(client)
    request = GenerationRequest(prompt="recovered after a crash")
    external_id = client.prepare(request)
    task = await client.create(request)
    tracker.track(external_id)

    sandbox.state.clock.advance(SUBMITTED_S + 0.1)
    before = counts(sandbox, "get")
    (change,) = await tracker.poll_once()
    assert change.task.task_id == task.task_id
    assert counts(sandbox, "get") == before


async def test_each_kind_gets_its_own_list_request(sandbox, client, tmp_path):
    from PIL import Image

    subject = tmp_path / "s.png"
    Image.new("RGB", (400, 400), "white").save(subject)
    tracker = Tracker(client)
    gen = await client.create(GenerationRequest(prompt="a"))
    multi = await client.create(MultiImageRequest(subject_images=[str(subject)], prompt="b", model_name="kling-v2"))
    tracker.track(gen.task_id)
    tracker.track(multi.task_id, kind="multi")

    sandbox.state.clock.advance(SUBMITTED_S + 0.1)
    before = counts(sandbox, "list", "multi_list", "get", "multi_get")
    changes = await tracker.poll_once()
    assert {(c.kind, c.task.task_id) for c in changes} == {("generation", gen.task_id), ("multi", multi.task_id)}
    after = counts(sandbox, "list", "multi_list", "get", "multi_get")
    assert [a - b for a, b in zip(after, before)] == [1, 1, 0, 0]


async def test_an_unknown_task_is_reported_as_an_error_and_dropped(sandbox, client):
    tracker = Tracker(client)
    tracker.track("never-created")
    assert await tracker.poll_once() == []
    assert [e.code for e in tracker.errors] == [1201]
    assert tracker.in_flight == 0


async def test_a_failed_list_raises_and_changes_nothing(sandbox, client):
    tracker = Tracker(client)
    task = await client.create(GenerationRequest(prompt="x"))
    tracker.track(task.task_id)
    sandbox.state.clock.advance(SUBMITTED_S + 0.1)
    sandbox.state.faults.add(endpoint="list", kind="error", code=1102, times=1)
    with pytest.raises(KlingError):
        await tracker.poll_once()
    (change,) = await tracker.poll_once()  # the change is still reported, once
    assert change.previous_status == "submitted"


async def test_interval_grows_only_while_the_service_fails(sandbox, client):
    tracker = Tracker(client, min_interval=1.0, max_interval=5.0)
    task = await client.create(GenerationRequest(prompt="x"))
    tracker.track(task.task_id)
    for _ in range(3):  # quiet cycles: still brisk, a result shows within one interval
        await tracker.poll_once()
        assert tracker.interval == 1.0

    intervals = []
    for _ in range(4):
        sandbox.state.faults.add(endpoint="list", kind="error", code=1102, times=1)
        with pytest.raises(KlingError):
            await tracker.poll_once()
        intervals.append(tracker.interval)
    assert intervals == [2.0, 4.0, 5.0, 5.0]

    sandbox.state.clock.advance(SUBMITTED_S + 0.1)
    assert len(await tracker.poll_once()) == 1
    assert tracker.interval == 1.0

    sandbox.state.faults.add(endpoint="list", kind="error", code=1102, times=1)
    with pytest.raises(KlingError):
        await tracker.poll_once()
    assert tracker.interval == 2.0
    tracker.track("another")
    assert tracker.interval == 1.0


async def test_run_reports_changes_survives_errors_and_stops_on_cancel(sandbox):
    async with KlingClient(sandbox.base_url, JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY), max_retries=0) as client:
        tracker = Tracker(client, min_interval=0.01, max_interval=0.05)
        changes: list[StatusChange] = []
        errors: list[Exception] = []

        async def on_change(change: StatusChange) -> None:  # async callbacks are awaited
            changes.append(change)

        sandbox.state.faults.add(endpoint="list", kind="error", code=5001, times=3)
        runner = asyncio.create_task(tracker.run(on_change, errors.append))
        try:
            task = await client.create(GenerationRequest(prompt="x"))
            tracker.track(task.task_id)
            await wait_for(lambda: len(errors) == 3)
            assert all(isinstance(e, KlingError) and e.code == 5001 for e in errors)

            sandbox.state.clock.advance(SUBMITTED_S + 0.1)
            await wait_for(lambda: len(changes) == 1)
            sandbox.state.clock.advance(PROCESSING_S)
            await wait_for(lambda: len(changes) == 2)
            assert [c.task.task_status for c in changes] == ["processing", "succeed"]
            assert tracker.in_flight == 0
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        assert runner.cancelled()


async def test_wake_polls_at_once(sandbox, client):
    tracker = Tracker(client, min_interval=60.0, max_interval=60.0)  # would never poll by itself here
    task = await client.create(GenerationRequest(prompt="x"))
    tracker.track(task.task_id)
    changes: list[StatusChange] = []
    runner = asyncio.create_task(tracker.run(changes.append))
    try:
        before = counts(sandbox, "list")[0]
        tracker.wake()
        await wait_for(lambda: counts(sandbox, "list")[0] == before + 1)
        sandbox.state.clock.advance(SUBMITTED_S + 0.1)
        tracker.wake()
        await wait_for(lambda: len(changes) == 1)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_an_idle_tracker_sends_nothing_until_a_task_is_tracked(sandbox, client):
    tracker = Tracker(client, min_interval=0.01, max_interval=0.02)
    changes: list[StatusChange] = []
    runner = asyncio.create_task(tracker.run(changes.append))
    try:
        await asyncio.sleep(0)  # let it reach its idle wait
        task = await client.create(GenerationRequest(prompt="x"))
        assert counts(sandbox, "list") == (0,)
        tracker.track(task.task_id)
        await wait_for(lambda: counts(sandbox, "list")[0] >= 1)
        sandbox.state.clock.advance(SUBMITTED_S + PROCESSING_S + 1)
        await wait_for(lambda: tracker.in_flight == 0)
        assert [c.task.task_status for c in changes] == ["succeed"]
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_cancelling_the_poller_stops_it_even_as_it_is_woken(client):
    # A command ends by cancelling its poller; if a wake-up (a task just sent) lands in the same
    # moment, the cancel must still win. (With asyncio.wait_for on Python 3.11 it could be lost,
    # and the command waited forever for a poller that went on.)
    for _ in range(20):
        tracker = Tracker(client, min_interval=5.0, max_interval=5.0)
        tracker.track("task-1")
        polling = asyncio.create_task(tracker.run(lambda change: None))
        await asyncio.sleep(0)  # into the pause before the first cycle
        tracker.wake()
        polling.cancel()
        done, _ = await asyncio.wait([polling], timeout=5)
        assert done and polling.cancelled()
