"""Goals 3, 4 and 6: the running app, driven in-process against a sandbox in its own process.

Each run drives the real app headless with App.run_test at 120x36; a FrameProbe notes when
each frame is painted, so every figure ends at the first frame that shows the result.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import API_KEY, CACHE, SIZE, FrameProbe, Row, median, percentile, sandbox_process
from benchmarks.history import history_home


@contextmanager
def user_env(home: Path, base_url: str) -> Iterator[None]:
    """KLING_TUI_HOME, KLING_BASE_URL and KLING_API_KEY as a user would export them."""
    values = {"KLING_TUI_HOME": str(home), "KLING_BASE_URL": base_url, "KLING_API_KEY": API_KEY}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fresh_home(name: str) -> Path:
    home = CACHE / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home


def build_app(poll_interval: float, protocol: str = "halfcell") -> Any:
    from kling_tui.config import load_settings
    from kling_tui.ui.app import make_app

    return make_app(load_settings(), image_protocol=protocol, poll_interval=poll_interval)


async def quiesce(app: Any) -> None:
    """Stop the poller and its downloads before the app closes: messages must not outlive the screen."""
    workers = [w for w in app.workers if w.group in ("poller", "reconcile", "submit")]
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*(w.wait() for w in workers), return_exceptions=True)
    await app.workbench.aclose()


async def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# -- 3. notice latency ---------------------------------------------------------------------


async def _notice(base_url: str, count: int, poll_interval: float, log) -> list[float]:
    from kling_tui.api.types import GenerationRequest

    rng = random.Random(3)
    app = build_app(poll_interval)
    probe = FrameProbe(app)
    changed: list[str] = []  # rows whose status cell just turned "succeed", not painted yet
    shown_at: dict[str, float] = {}  # local id -> Unix time of the first frame showing "succeed"

    def on_frame(now: float) -> None:
        for key in changed:
            shown_at.setdefault(key, now + probe.wall_offset)
        changed.clear()

    probe.listeners.append(on_frame)
    async with app.run_test(size=SIZE):
        table = app.table
        update_cell = table.update_cell

        def observed_update_cell(row_key, column_key, value, **kwargs):
            update_cell(row_key, column_key, value, **kwargs)
            if column_key == "status" and "succeed" in getattr(value, "plain", "") and row_key not in shown_at:
                changed.append(row_key)

        table.update_cell = observed_update_cell
        await wait_until(lambda: app.workbench is not None, 10, "the app to connect")
        local_ids = []
        for i in range(count):
            request = GenerationRequest(prompt=f"notice latency {i}", aspect_ratio="1:1")
            record = await asyncio.wait_for(app.workbench.submit(request), 30)
            local_ids.append(record.local_id)
            # Users submit now and then: completions fall at random points of the poll cycle.
            await asyncio.sleep(rng.uniform(0.3, 2.5))
        await wait_until(lambda: all(k in shown_at for k in local_ids), 60, "every task to show as succeeded")
        # The sandbox's own record of when each task succeeded (its updated_at, on the same wall clock).
        latencies = []
        for local_id in local_ids:
            task = await app.workbench.client.get(app.store.get(local_id).task_id)
            latencies.append(shown_at[local_id] - task.updated_at / 1000)
        await quiesce(app)
    return latencies


def notice(count: int, poll_interval: float, log=print) -> list[Row]:
    home = fresh_home("notice-home")
    # The sandbox's default lifecycle: 2 s submitted, 4 s processing.
    with sandbox_process(submitted=2.0, processing=4.0) as base_url, user_env(home, base_url):
        latencies = asyncio.run(_notice(base_url, count, poll_interval, log))
    ms = [x * 1000 for x in latencies]
    p50, p95, worst = percentile(ms, 50), percentile(ms, 95), max(ms)
    log(f"  notice latency over {count} tasks: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {worst:.0f} ms")
    interval = poll_interval * 1000
    return [
        Row("succeed -> table, p50", p50, "ms", "poll interval", interval, "(info)", None),
        Row(
            "succeed -> table, p95",
            p95,
            "ms",
            "poll interval",
            interval,
            "<= 1.2x",
            p95 <= 1.2 * interval,
        ),
    ]


# -- 4. preview ----------------------------------------------------------------------------

PREVIEW_TASKS = 16


def preview_home() -> tuple[Path, list[str]]:
    """A history of tasks that each saved one 2k (2048x2048) result image; made once."""
    from benchmarks.history import home_env
    from kling_tui.history.store import HistoryStore
    from kling_tui.sandbox.render import output_size, render_png

    home = CACHE / f"preview-{PREVIEW_TASKS}"
    if not (home / "READY").exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        width, height = output_size("1:1", "2k")
        with home_env(home), HistoryStore() as store:
            for i in range(PREVIEW_TASKS):
                prompt = f"a lighthouse at dusk, study {i}"
                record = store.new_record("generation", {"prompt": prompt, "resolution": "2k", "aspect_ratio": "1:1"})
                (store.task_dir(record.local_id) / "image-1.png").write_bytes(render_png(prompt, 0, width, height))
                store.update(
                    record.local_id,
                    status="succeed",
                    task_id=str(10**17 + i),
                    finished_at=record.created_at + 20,
                    image_urls=[f"https://cdn.example.invalid/{i}/0.png"],
                    image_paths=["image-1.png"],
                )
        (home / "READY").write_text("ok\n")
    with home_env(home), HistoryStore() as store:
        ids = [row.local_id for row in store.recent(PREVIEW_TASKS)]
    return home, ids


async def _preview(ids: list[str]) -> tuple[list[float], list[float], list[float]]:

    app = build_app(poll_interval=0.5)
    probe = FrameProbe(app)
    first, cached = [], []
    async with app.run_test(size=SIZE) as pilot:
        table, preview = app.table, app.preview
        await wait_until(lambda: table.row_count == len(ids), 10, "the history rows")
        table.focus()
        await pilot.pause()

        async def select(row: int) -> float:
            path = app.store.task_dir(table.coordinate_to_cell_key((row, 0)).row_key.value) / "image-1.png"
            started = time.perf_counter()
            table.move_cursor(row=row, animate=False)
            return await probe.frame_where(lambda: preview.shown == path) - started

        def pillow_alone(row: int) -> float:
            path = app.store.task_dir(table.coordinate_to_cell_key((row, 0)).row_key.value) / "image-1.png"
            started = time.perf_counter()
            pillow_shrink(path, preview.cache.max_side)
            return time.perf_counter() - started

        # Warm-up: row 0 is selected on start; rows 1 and 0 again are not measured.
        await select(1)
        await select(0)
        pillow_alone(0)
        # Interleaved with its baseline, so that a busy machine slows both sides alike: Pillow
        # alone decoding and shrinking a file, then the app showing that file for the first time.
        decode = []
        for row in range(2, len(ids)):
            decode.append(pillow_alone(row))
            first.append(await select(row))
        for row in range(2, len(ids)):
            cached.append(await select(row))
        await quiesce(app)
    return first, cached, decode


def pillow_shrink(path: Path, side: int) -> None:
    """Pillow's own decode and shrink of one file, the way any viewer would do it."""
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", (side, side))
        small = img.convert("RGB")
    small.thumbnail((side, side))


def drop_thumbnails(home: Path) -> None:
    """Thumbnails are cached beside the images: a "first" figure must start without them."""
    for folder in home.rglob(".thumbs"):
        shutil.rmtree(folder, ignore_errors=True)


def preview(log=print) -> list[Row]:
    home, ids = preview_home()
    drop_thumbnails(home)
    with sandbox_process(submitted=2.0, processing=4.0) as base_url, user_env(home, base_url):
        first, cached, decode = asyncio.run(_preview(ids))
    f, c, d = (median(v) * 1000 for v in (first, cached, decode))
    log(
        f"  preview 2k: first {f:.0f} ms (max {max(first) * 1000:.0f}), cached {c:.1f} ms (max {max(cached) * 1000:.1f}), "
        f"Pillow decode+shrink {d:.0f} ms"
    )
    return [
        Row(
            "select -> 2k preview, first (p50)",
            f,
            "ms",
            "Pillow decode+shrink, interleaved",
            d,
            "<= 1.5x",
            f <= 1.5 * d,
        ),
        Row(
            "select -> 2k preview, first (p50)", f, "ms", "Pillow decode+shrink, interleaved", d, "<= 150 ms", f <= 150
        ),
        Row("select -> 2k preview, cached (p50)", c, "ms", "first time", f, "<= 0.5x", c <= 0.5 * f),
        Row("select -> 2k preview, cached (p50)", c, "ms", "first time", f, "<= 30 ms", c <= 30),
    ]


# -- 6. input latency ----------------------------------------------------------------------


async def _keys(presses: int, in_flight: int, poll_interval: float, warmup: int = 0) -> list[float]:
    from textual import events

    from kling_tui.api.types import GenerationRequest

    app = build_app(poll_interval)
    probe = FrameProbe(app)
    rng = random.Random(6)
    latencies = []
    async with app.run_test(size=SIZE) as pilot:
        table = app.table
        await wait_until(lambda: app.workbench is not None, 10, "the app to connect")
        if in_flight:
            # Tasks sent in an earlier round are still processing; the app tracks them again on start.
            running = sum(1 for record in app.store.active() if record.task_id)
            await wait_until(lambda: app.workbench.tracker.in_flight >= running, 30, "earlier tasks to be tracked")
            gate = asyncio.Semaphore(16)

            async def submit(i: int) -> None:
                # Straight to the server, past the local queue (whose budget is at most 64 slots):
                # all 200 are then tracked by the poller.
                request = GenerationRequest(prompt=f"in flight {i}", aspect_ratio="16:9")
                async with gate:
                    await app.workbench.send(app.workbench.record(request), request)

            await asyncio.gather(*(submit(i) for i in range(running, in_flight)))
            await wait_until(lambda: app.workbench.tracker.in_flight == in_flight, 30, "every task to be tracked")
        await wait_until(lambda: table.row_count >= 200, 10, "200 rows")
        table.focus()
        table.move_cursor(row=0, animate=False)
        await pilot.pause()
        step = 1
        for press in range(warmup + presses):
            # Down to the last row, back up to the first, and so on.
            if not 0 <= table.cursor_row + step < table.row_count:
                step = -step
            key, target = ("j" if step == 1 else "k"), table.cursor_row + step
            started = time.perf_counter()
            app.post_message(events.Key(key, key))
            latency = await probe.frame_where(lambda target=target: table.cursor_row == target) - started
            if press >= warmup:
                latencies.append(latency)
            await asyncio.sleep(rng.uniform(0.01, 0.04))  # key repeat: 25-100 presses a second
        if in_flight:
            assert app.workbench.tracker.in_flight == in_flight, "tasks finished during the measurement"
        await quiesce(app)
    return latencies


INPUT_ROUNDS = 4
INPUT_WARMUP = 20


def input_latency(presses: int, poll_interval: float, log=print) -> list[Row]:
    """Idle and busy in alternating rounds (each a fresh app after a warm-up), so that a busy
    machine slows both sides of the ratio alike."""
    idle_home = history_home(200, log=log)
    busy_home = fresh_home("input-home")
    per_round = max(1, presses // INPUT_ROUNDS)
    idle: list[float] = []
    busy: list[float] = []
    # Busy: tasks move to processing a second into the run and stay there; status cells keep changing.
    with sandbox_process(submitted=2.0, processing=4.0) as idle_url, sandbox_process(1.0, 3600) as busy_url:
        for _ in range(INPUT_ROUNDS):
            with user_env(idle_home, idle_url):
                idle += asyncio.run(_keys(per_round, 0, poll_interval, INPUT_WARMUP))
            with user_env(busy_home, busy_url):
                busy += asyncio.run(_keys(per_round, 200, poll_interval, INPUT_WARMUP))
    i99, b99 = percentile(idle, 99) * 1000, percentile(busy, 99) * 1000
    log(
        f"  keypress -> frame over {len(busy)} presses each: idle p50 {median(idle) * 1000:.1f} / p99 {i99:.1f} ms; "
        f"200 in flight p50 {median(busy) * 1000:.1f} / p99 {b99:.1f} ms (max {max(busy) * 1000:.1f})"
    )
    base = "200 finished, none in flight"
    return [
        Row("keypress -> frame, 200 in flight, p99", b99, "ms", base + ", interleaved", i99, "<= 2x", b99 <= 2 * i99),
        Row("keypress -> frame, 200 in flight, p99", b99, "ms", base + ", interleaved", i99, "<= 50 ms", b99 <= 50),
    ]
