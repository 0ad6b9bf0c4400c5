"""Task histories of a given size, generated once with the fast populate helper and kept in .cache/."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import CACHE

SEED = 2024
# Part of the folder name: bump it (or delete .cache/) when the populate helper changes.
LAYOUT = 1


@contextmanager
def home_env(home: Path) -> Iterator[None]:
    """Point kling-tui's locations at `home` for the duration."""
    before = os.environ.get("KLING_TUI_HOME")
    os.environ["KLING_TUI_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("KLING_TUI_HOME", None)
        else:
            os.environ["KLING_TUI_HOME"] = before


def history_home(count: int, log=print) -> Path:
    """A KLING_TUI_HOME whose history holds `count` finished tasks (made on first use)."""
    from benchmarks.fixtures import populate
    from kling_tui.history.index import INDEX_VERSION
    from kling_tui.history.store import SCHEMA_VERSION, HistoryStore

    home = CACHE / f"history-{count}-s{SEED}-r{SCHEMA_VERSION}-i{INDEX_VERSION}-l{LAYOUT}"
    ready = home / "READY"
    with home_env(home):
        if not ready.exists():
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            started = time.perf_counter()
            with HistoryStore() as store:
                # A fixed end time: the same history on every run.
                populate(store, count, seed=SEED, end=1_760_000_000.0)
            log(f"  generated {count:,} tasks of history in {time.perf_counter() - started:.1f} s ({home.name})")
            ready.write_text("ok\n")
        # Opening once brings the index up to date, so no timed run pays for a catch-up.
        with HistoryStore() as store:
            found = store.count()
    if found != count:
        raise RuntimeError(f"{home} holds {found} tasks, expected {count}; delete it and run again")
    return home
