"""Full-text search in the history index at 100,000 tasks next to 10 tasks, in the same run."""

from __future__ import annotations

import statistics
import time

from benchmarks.common import Row
from benchmarks.history import history_home, home_env

# What the table's `/` filter asks per keystroke: the first page of matches and their count.
PAGE = 200
QUERIES = (
    ("1 word", "fox"),  # about 1 task in 12
    ("2 words", "watercolour owl"),  # about 1 in 100
    ("1 letter", "a"),  # every task: the worst case, a prefix of the most common words
)
GOAL_MS = 50.0


def _time_query(words: str, repeats: int) -> float:
    from kling_tui.history.store import HistoryStore

    with HistoryStore() as store:
        store.recent(PAGE, words=words)  # warm the page cache
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            store.recent(PAGE, words=words)
            store.count(words=words)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(repeats: int = 15, log=print) -> list[Row]:
    small, large = history_home(10, log=log), history_home(100_000, log=log)
    rows = []
    for label, words in QUERIES:
        with home_env(small):
            base = _time_query(words, repeats)
        with home_env(large):
            value = _time_query(words, repeats)
        log(f"  search {words!r}: {value:.1f} ms at 100,000 tasks, {base:.2f} ms at 10")
        rows.append(
            Row(
                f"search {label} ({words}), 100,000 tasks",
                value,
                "ms",
                "10 tasks",
                base,
                f"<= {GOAL_MS:g} ms",
                value <= GOAL_MS,
            )
        )
    return rows
