"""Goal 2: requests per poll cycle with many tasks in flight, next to one GET per task."""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import API_KEY, Row, sandbox_counters, sandbox_process

READS = ("get", "list", "multi_get", "multi_list")
CYCLES = 5


def _reads(base_url: str) -> int:
    counters = sandbox_counters(base_url)
    return sum(counters.get(key, 0) for key in READS)


async def _create(client, count: int) -> list[str]:
    from kling_tui.api.types import GenerationRequest

    gate = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        async with gate:
            task = await client.create(GenerationRequest(prompt=f"benchmark task {i}", aspect_ratio="1:1"))
            return task.task_id

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _measure(base_url: str, sizes: list[int], log) -> list[Row]:
    from kling_tui.api.auth import ApiKeyAuth
    from kling_tui.api.client import KlingClient
    from kling_tui.work.tracker import Tracker

    rows = []
    async with KlingClient(base_url, ApiKeyAuth(API_KEY)) as client:
        task_ids = await _create(client, max(sizes))
        for size in sizes:
            in_flight = task_ids[-size:]
            # The tracker as the app builds it (ui/app.py connect()).
            tracker = Tracker(client, min_interval=0.5, max_interval=5.0)
            for task_id in in_flight:
                tracker.track(task_id)
            before, started = _reads(base_url), time.perf_counter()
            for _ in range(CYCLES):
                await tracker.poll_once()
            ours, ours_s = (_reads(base_url) - before) / CYCLES, (time.perf_counter() - started) / CYCLES
            assert tracker.in_flight == size, "every task should still be in flight"

            # What per-task pollers do: one GET per task per cycle.
            before, started = _reads(base_url), time.perf_counter()
            for _ in range(CYCLES):
                for task_id in in_flight:
                    await client.get(task_id)
            theirs, theirs_s = (_reads(base_url) - before) / CYCLES, (time.perf_counter() - started) / CYCLES
            log(
                f"  {size} in flight: {ours:g} req/cycle in {ours_s * 1000:.1f} ms; "
                f"per-task GETs: {theirs:g} req/cycle in {theirs_s * 1000:.1f} ms"
            )
            rows.append(
                Row(
                    f"requests/poll cycle, {size} in flight",
                    ours,
                    "req",
                    "one GET per task",
                    theirs,
                    "<= 1 req",
                    ours <= 1,
                )
            )
    return rows


def measure(sizes: list[int], log=print) -> list[Row]:
    # Tasks never leave `submitted` during the run: all of them stay in flight.
    with sandbox_process(submitted=86400, processing=60) as base_url:
        return asyncio.run(_measure(base_url, sizes, log))
