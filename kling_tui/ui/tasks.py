"""The live task table: newest first, updated in place by row key."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.widgets import DataTable

from kling_tui.base.textsafe import plain
from kling_tui.history.store import TaskRecord, TaskRow

STATUS_STYLES = {
    "queued": "dim",
    "pending": "yellow",
    "submitted": "cyan",
    "processing": "bold cyan",
    "succeed": "green",
    "failed": "bold red",
    "not_created": "red",
    "error": "red",
}
STATUS_ICONS = {
    "queued": "…",
    "pending": "↑",
    "submitted": "◌",
    "processing": "◐",
    "succeed": "✓",
    "failed": "✗",
    "not_created": "✗",
    "error": "!",
}
ACTIVE = ("queued", "pending", "submitted", "processing")
# The prompt goes last: it is the one column that may be cut at the pane's edge.
COLUMNS = (
    ("time", "Time"),
    ("status", "Status"),
    ("model", "Model"),
    ("n", "n"),
    ("ratio", "Ratio"),
    ("units", "Units"),
    ("prompt", "Prompt"),
)
PROMPT_WIDTH = 60
ROW_CACHE = 200  # rendered rows and lines kept: a few screenfuls at 200x60
CELL_CACHE = ROW_CACHE * len(COLUMNS)
STATUS_MSG_WIDTH = 40
MATCH_STYLE = "bold underline"


class Stamp(Text):
    """A time cell that sorts by its timestamp."""

    def __init__(self, ts: float) -> None:
        when = datetime.fromtimestamp(ts)
        today = datetime.now().date() == when.date()
        super().__init__(when.strftime("%H:%M:%S" if today else "%b %d %H:%M"))
        self.ts = ts


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def status_cell(row: TaskRow | TaskRecord, now: float) -> Text:
    status = row.status
    start = getattr(row, "submitted_at", None) or row.created_at
    end = row.finished_at or now
    label = "not created" if status == "not_created" else status
    text = Text(f"{STATUS_ICONS.get(status, '?')} {label}", style=STATUS_STYLES.get(status, ""))
    if status in ("submitted", "processing", "succeed", "failed"):
        text.append(f" {_elapsed(end - start)}", style="dim")
    return text


def _reason(row: TaskRow | TaskRecord) -> str:
    """Why a task failed or was not created (or why it is still unconfirmed), on one line."""
    if not row.status_msg or row.status not in ("failed", "not_created", "error", "pending", "queued"):
        return ""
    msg = plain(" ".join(row.status_msg.split()))
    return msg if len(msg) <= STATUS_MSG_WIDTH else msg[: STATUS_MSG_WIDTH - 1] + "…"


def highlighter(terms: Sequence[str]) -> re.Pattern[str] | None:
    """Words starting with any search term (as the index matches them), whole words marked."""
    if not terms:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE)


def prompt_cell(row: TaskRow | TaskRecord, matches: re.Pattern[str] | None = None) -> Text:
    """The prompt, after the reason a task failed: the last column, so the status column stays
    narrow and the others stay in view however long the reason. `matches`: words to mark."""
    flat = plain(" ".join((row.prompt or "").split()))
    text = Text(no_wrap=True)
    reason = _reason(row)
    if reason:
        text.append(reason, style=STATUS_STYLES.get(row.status, ""))
        text.append(" · ", style="dim")
    if row.starred:
        text.append("★ ", style="bold yellow")
    if row.group:
        text.append(f"⧉{row.group[:4]} ", style="magenta")
    text.append(flat if len(flat) <= PROMPT_WIDTH else flat[: PROMPT_WIDTH - 1] + "…")
    if matches is not None:
        text.highlight_regex(matches, MATCH_STYLE)
    return text


def _model(row: TaskRow | TaskRecord) -> str:
    model = plain(row.model or "")
    return model.removeprefix("kling-") or "-"


def _n(row: TaskRow | TaskRecord) -> str:
    return str(row.n or 1)


def _ratio(row: TaskRow | TaskRecord) -> str:
    return plain(row.aspect_ratio or "-")


class TaskTable(DataTable):
    """One row per task; keys are local ids. Cells change in place, rows are never rebuilt."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="tasks.down"),
        Binding("k", "cursor_up", "Up", show=False, id="tasks.up"),
        Binding("g", "scroll_top", "First", show=False, id="tasks.first"),
        Binding("G", "scroll_bottom", "Last", show=False, id="tasks.last"),
    ]

    def __init__(self, *, clock: Callable[[], float] = time.time, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        # Render caches sized for a few screenfuls. DataTable's defaults (10,000 cells) keep
        # ~100k objects alive that every full garbage collection walks: 100+ ms pauses
        # while the user types or scrolls.
        self._cell_render_cache = LRUCache(CELL_CACHE)
        self._row_render_cache = LRUCache(ROW_CACHE)
        self._row_renderable_cache = LRUCache(ROW_CACHE)
        self._line_cache = LRUCache(ROW_CACHE)
        self.clock = clock
        self._rows: dict[str, TaskRow | TaskRecord] = {}
        self.matches: re.Pattern[str] | None = None  # the filter's words, marked in the prompt cells

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def _cells(self, row: TaskRow | TaskRecord) -> list:
        now = self.clock()
        return [
            Stamp(row.created_at),
            status_cell(row, now),
            Text(_model(row)),
            Text(_n(row), justify="right"),
            Text(_ratio(row)),
            Text(plain(row.units or ""), justify="right"),
            prompt_cell(row, self.matches),
        ]

    def load(self, rows: list[TaskRow]) -> None:
        """Show a fresh set of rows (start-up, a new filter, more history)."""
        self.clear()
        self._rows.clear()
        self.append(rows)

    def append(self, rows: list[TaskRow]) -> None:
        for row in rows:
            if row.local_id in self._rows:
                continue
            self._rows[row.local_id] = row
            self.add_row(*self._cells(row), key=row.local_id)

    def upsert(self, record: TaskRecord, *, at_top: bool = True) -> None:
        """Show a record's current state: new rows go on top, known rows change in place."""
        if record.local_id in self._rows:
            old = self._rows[record.local_id]
            self._rows[record.local_id] = record
            cells = self._cells(record)
            before = self._cells(old)
            for (key, _), new, was in zip(COLUMNS[1:], cells[1:], before[1:]):
                if new.plain != was.plain or new.style != was.style:
                    self.update_cell(record.local_id, key, new, update_width=True)
            return
        self._rows[record.local_id] = record
        selected = self.selected_key
        self.add_row(*self._cells(record), key=record.local_id)
        if at_top:
            self.sort("time", key=lambda stamp: -stamp.ts)
            if selected is not None:
                self.move_cursor(row=self.get_row_index(selected), animate=False)

    def tick(self) -> None:
        """Refresh the elapsed time of rows still running."""
        now = self.clock()
        for local_id, row in self._rows.items():
            if row.status in ("submitted", "processing"):
                self.update_cell(local_id, "status", status_cell(row, now))

    @property
    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return key.value

    def known(self, local_id: str) -> bool:
        return local_id in self._rows

    def row_data(self, local_id: str) -> TaskRow | TaskRecord | None:
        return self._rows.get(local_id)
