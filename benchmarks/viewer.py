"""The grid and the full-screen viewer: how long until the images are on screen.

One task with nine 2k (2048x2048) PNGs. The real app (run_test, 120x36, halfcell) opens the
grid with `t` and the viewer with space; each figure ends at the first frame that shows the
result. Baseline, measured in the same run: Pillow decoding the same files on its own.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from benchmarks.common import CACHE, SIZE, FrameProbe, Row, median, sandbox_process
from benchmarks.live import build_app, drop_thumbnails, pillow_shrink, quiesce, user_env, wait_until

GRID_IMAGES = 9


def grid_home() -> tuple[Path, Path]:
    """A history with one task of nine 2k images; made once."""
    from benchmarks.history import home_env
    from kling_tui.history.store import HistoryStore
    from kling_tui.sandbox.render import output_size, render_png

    home = CACHE / f"grid-{GRID_IMAGES}"
    if not (home / "READY").exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        width, height = output_size("1:1", "2k")
        with home_env(home), HistoryStore() as store:
            prompt = "nine lighthouses at dusk"
            params = {"prompt": prompt, "resolution": "2k", "aspect_ratio": "1:1", "n": GRID_IMAGES}
            record = store.new_record("generation", params)
            names = [f"image-{i + 1}.png" for i in range(GRID_IMAGES)]
            for i, name in enumerate(names):
                (store.task_dir(record.local_id) / name).write_bytes(render_png(prompt, i, width, height))
            store.update(record.local_id, status="succeed", task_id="1", image_paths=names)
        (home / "READY").write_text("ok\n")
    with home_env(home), HistoryStore() as store:
        folder = store.task_dir(store.recent(1)[0].local_id)
    return home, folder


async def _run(folder: Path, rounds: int) -> dict[str, list[float]]:
    from kling_tui.ui.grid import GridScreen
    from kling_tui.ui.viewer import ViewerScreen

    app = build_app(poll_interval=0.5)
    probe = FrameProbe(app)
    times: dict[str, list[float]] = {"first": [], "cached": [], "viewer": [], "decode9": [], "decode1": []}
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.table.row_count == 1, 10, "the history row")
        app.table.focus()
        await pilot.pause()
        for round_ in range(rounds):
            drop_thumbnails(folder.parent)
            for label in ("first", "cached"):
                started = time.perf_counter()
                # Listening before the key: the frame may be painted before press() returns.
                grid_drawn = asyncio.ensure_future(
                    probe.frame_where(
                        lambda: isinstance(app.screen, GridScreen) and len(app.screen.drawn) == GRID_IMAGES, timeout=60
                    )
                )
                await pilot.press("t")
                done = await grid_drawn
                times[label].append(done - started)
                await pilot.press("escape")
                await wait_until(lambda: not isinstance(app.screen, GridScreen), 10, "the main screen")
            started = time.perf_counter()
            viewer_shown = asyncio.ensure_future(
                probe.frame_where(lambda: isinstance(app.screen, ViewerScreen) and app.screen.shown is not None, 30)
            )
            await pilot.press("space")
            done = await viewer_shown
            times["viewer"].append(done - started)
            await pilot.press("escape")
            await wait_until(lambda: not isinstance(app.screen, ViewerScreen), 10, "the main screen")
            # Pillow on its own, same files, same run.
            started = time.perf_counter()
            for i in range(GRID_IMAGES):
                pillow_shrink(folder / f"image-{i + 1}.png", 256)
            times["decode9"].append(time.perf_counter() - started)
            started = time.perf_counter()
            pillow_shrink(folder / f"image-{1 + round_ % GRID_IMAGES}.png", 4096)
            times["decode1"].append(time.perf_counter() - started)
        await quiesce(app)
    return times


def measure(quick: bool = False, log=print) -> list[Row]:
    home, folder = grid_home()
    rounds = 3 if quick else 8
    with sandbox_process(submitted=2.0, processing=4.0) as base_url, user_env(home, base_url):
        times = asyncio.run(_run(folder, rounds))
    first, cached, viewer, decode9, decode1 = (
        median(times[k]) * 1000 for k in ("first", "cached", "viewer", "decode9", "decode1")
    )
    log(
        f"  grid of 9: first {first:.0f} ms, cached {cached:.0f} ms (Pillow 9 decodes {decode9:.0f} ms); "
        f"full screen {viewer:.0f} ms (Pillow 1 decode {decode1:.0f} ms)"
    )
    return [
        Row(
            "grid of 9 2k images, first (p50)",
            first,
            "ms",
            "Pillow: 9 decode+shrink",
            decode9,
            "<= 1.5x",
            first <= 1.5 * decode9,
        ),
        Row(
            "grid of 9 2k images, cached (p50)",
            cached,
            "ms",
            "Pillow: 9 decode+shrink",
            decode9,
            "<= 0.5x",
            cached <= 0.5 * decode9,
        ),
        Row(
            "full-screen open, 2k (p50)",
            viewer,
            "ms",
            "Pillow: 1 full decode",
            decode1,
            "<= 3x",
            viewer <= 3 * decode1,
        ),
    ]
