"""Goals 1 and 5: cold start to the first frame, and peak memory, by history size."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks.common import REPO, Row, child_env, median
from benchmarks.history import history_home


def one_start(kind: str, env: dict[str, str]) -> dict[str, float]:
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.startup_child", kind, repr(spawned)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"startup child {kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


# A bare Textual app peaks at a few tens of MiB; far outside this range, the figure measures
# something else (e.g. a high-water mark inherited from the parent).
BARE_RSS_MIB = (15.0, 120.0)


def check_rss_plausible(bare: float, kling_empty: float) -> None:
    low, high = BARE_RSS_MIB
    if not low <= bare <= high or bare > kling_empty:
        raise RuntimeError(
            f"implausible peak RSS: bare app {bare:.1f} MiB, kling-tui {kling_empty:.1f} MiB "
            f"(expected the bare app within {low:g}-{high:g} MiB and below kling-tui)"
        )


def measure(base_url: str, sizes: list[int], repeats: int, log=print) -> list[Row]:
    homes = {size: history_home(size, log=log) for size in sizes}
    variants = [("bare", "bare", homes[sizes[0]])] + [(f"kling-{size}", "kling", homes[size]) for size in sizes]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    for _name, kind, home in variants:  # one unmeasured start each: warm the disk cache
        one_start(kind, child_env(home, base_url))
    for _ in range(repeats):
        # Round robin, so background noise falls on every variant alike.
        for name, kind, home in variants:
            runs[name].append(one_start(kind, child_env(home, base_url)))
    first = {name: median([r["first_frame"] for r in results]) * 1000 for name, results in runs.items()}
    rss = {name: median([r["peak_rss_kb"] for r in results]) / 1024 for name, results in runs.items()}
    check_rss_plausible(rss["bare"], rss[f"kling-{sizes[0]}"])
    log("  startup ms: " + ", ".join(f"{k} {v:.0f}" for k, v in first.items()))

    empty, largest = f"kling-{sizes[0]}", f"kling-{sizes[-1]}"
    rows = [Row("startup, empty history", first[empty], "ms", "bare Textual app", first["bare"], "(info)", None)]
    for size in sizes[1:]:
        rows.append(
            Row(f"startup, {size:,} tasks", first[f"kling-{size}"], "ms", "empty history", first[empty], "(info)", None)
        )
    rows[-1].goal, rows[-1].ok = "<= 1.1x", first[largest] <= 1.1 * first[empty]
    rows.append(
        Row(
            f"startup, {sizes[-1]:,} tasks",
            first[largest],
            "ms",
            "bare Textual app",
            first["bare"],
            "<= 1.5x",
            first[largest] <= 1.5 * first["bare"],
        )
    )
    rows.append(
        Row(
            f"peak RSS, {sizes[-1]:,} tasks",
            rss[largest],
            "MiB",
            "empty history",
            rss[empty],
            "<= 1.2x",
            rss[largest] <= 1.2 * rss[empty],
        )
    )
    rows.append(Row("peak RSS, empty history", rss[empty], "MiB", "bare Textual app", rss["bare"], "(info)", None))
    return rows
