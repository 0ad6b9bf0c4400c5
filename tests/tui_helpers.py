"""Driving the real app against the real sandbox: waiting for conditions, not for time."""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_TIMEOUT = 15.0


def sandbox_history():
    """The history an app on the sandbox reads and writes (kept apart from the real one)."""
    from kling_tui.base.locations import history_dir
    from kling_tui.history.store import HistoryStore

    return HistoryStore(history_dir(sandbox=True))


async def wait_for(pilot, condition: Callable[[], object], timeout: float = DEFAULT_TIMEOUT, what: str = "") -> None:
    """Let the app run until `condition()` holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


def shown(app, widget_id: str) -> str:
    """What a hint says on screen: nothing when it is hidden or was never needed."""
    from textual.widgets import Static

    widget = next(iter(app.query(f"#{widget_id}").results(Static)), None)
    return str(widget.render()) if widget is not None and widget.display else ""


def cell_text(table, row_key: str, column: str) -> str:
    value = table.get_cell(row_key, column)
    return getattr(value, "plain", str(value))
