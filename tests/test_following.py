"""Following tasks: results are recorded and saved without holding up the next poll."""

from __future__ import annotations

import asyncio
import time

import pytest

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.types import GenerationRequest
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.work.budget import SlotBudget
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench


async def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def sandbox_config(sandbox_config):
    sandbox_config.submitted_seconds = 0.1
    sandbox_config.processing_seconds = 0.2
    return sandbox_config


@pytest.fixture
async def bench(sandbox):
    client = KlingClient(sandbox.base_url, ApiKeyAuth(DEFAULT_API_KEY), backoff=0.01)
    tracker = Tracker(client, min_interval=0.05, max_interval=0.1)
    bench = Workbench(client, HistoryStore(), default_capabilities(), tracker=tracker, budget=SlotBudget(9))
    yield bench
    await bench.aclose()
    await client.aclose()


async def test_slow_downloads_do_not_hold_up_the_next_status(sandbox, bench):
    # Every image takes 1.5 s to arrive; the second task's result must not wait for them.
    sandbox.state.faults.add(endpoint="image", kind="latency", seconds=1.5)
    follow = asyncio.create_task(bench.follow())
    try:
        first = await bench.submit(GenerationRequest(prompt="slow images", n=2))
        await wait_until(lambda: bench.store.get(first.local_id).status == "succeed")
        second = await bench.submit(GenerationRequest(prompt="right after"))
        await wait_until(lambda: bench.store.get(second.local_id).status == "succeed")
        assert len(bench.store.get(first.local_id).image_paths) < 2, "the second result waited for the downloads"
        await wait_until(lambda: len(bench.store.get(first.local_id).image_paths) == 2)
    finally:
        follow.cancel()


async def test_overlapping_saves_of_one_task_download_each_image_once(sandbox, bench):
    bench.auto_download = False
    follow = asyncio.create_task(bench.follow())
    try:
        record = await bench.submit(GenerationRequest(prompt="saved twice", n=3))
        await wait_until(lambda: bench.store.get(record.local_id).status == "succeed")
    finally:
        follow.cancel()
    record = bench.store.get(record.local_id)
    before = sandbox.state.counters()["image"]
    first, second = await asyncio.gather(bench.save_images(record), bench.save_images(record))
    assert sandbox.state.counters()["image"] - before == 3
    assert first.image_paths == second.image_paths == ["image-1.png", "image-2.png", "image-3.png"]
