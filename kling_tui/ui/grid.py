"""A task's images, or a variant group's, side by side; each cell labelled with what differs
(the template values first, for tasks filled from a prompt template)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Grid, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from kling_tui.base.textsafe import plain
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.history.thumbs import cached_thumbnail, has_thumbnail
from kling_tui.ui.preview import THUMB_SIDE, image_widget_class
from kling_tui.ui.viewer import ViewerScreen, size_image

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

MAX_CELLS = 16
DECODE_THREADS = min(4, os.cpu_count() or 1)
# The fields whose differences label a group's cells, in this order; others follow by name.
LABEL_FIELDS = ("model_name", "aspect_ratio", "resolution", "prompt", "negative_prompt")
LABEL_SKIP = frozenset({"external_task_id", "callback_url"})


@dataclass(frozen=True)
class GridItem:
    local_id: str
    index: int  # of the image within its task
    path: Path
    label: str


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows): 2x2 for 4, 3x3 for 9, one row for 2 or 3."""
    if count <= 3:
        return max(1, count), 1
    columns = math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


def _short(value: object, width: int = 40) -> str:
    text = plain(" ".join(str(value).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def _part(name: str, value: object) -> str:
    if name in LABEL_FIELDS:
        return _short(value, 40 if name.endswith("prompt") else 16)
    return f"{plain(name)}={_short(value, 16)}"


def differing_fields(records: Sequence[TaskRecord]) -> list[str]:
    """The request fields whose values are not the same in every record."""
    names: set[str] = set()
    for record in records:
        names |= set(record.params)
    differ = {n for n in names - LABEL_SKIP if len({repr(r.params.get(n)) for r in records}) > 1}
    return [n for n in LABEL_FIELDS if n in differ] + sorted(differ - set(LABEL_FIELDS))


def differing_values(records: Sequence[TaskRecord]) -> list[str]:
    """The template slots whose values are not the same in every record."""
    keys = dict.fromkeys(key for record in records for key in record.template_values)
    return [key for key in keys if len({r.template_values.get(key) for r in records}) > 1]


def _value(value: str | None) -> str:
    return "—" if value is None else _short(value, 16) if value else "∅"  # ∅: an empty alternative


def grid_items(store: HistoryStore, records: Sequence[TaskRecord]) -> list[GridItem]:
    """Every saved image of `records`, labelled: by position for one task, by what differs for several."""
    fields = differing_fields(records) if len(records) > 1 else []
    slots = differing_values(records) if len(records) > 1 else []
    if slots:  # the values say how the prompts differ, in fewer words
        fields = [f for f in fields if f != "prompt"]
    items: list[GridItem] = []
    for record in records:
        folder = store.task_dir(record.local_id)
        count = len(record.image_paths)
        for index, name in enumerate(record.image_paths):
            if len(records) == 1:
                label = f"image {index + 1}/{count}"
            else:
                parts = [_value(record.template_values.get(k)) for k in slots]
                parts += [_part(f, record.params.get(f, "—")) for f in fields]
                label = " · ".join(parts) or record.local_id
                if count > 1:
                    label += f" · #{index + 1}"
            if record.starred:
                label = "★ " + label
            items.append(GridItem(record.local_id, index, folder / name, label))
    return items[:MAX_CELLS]


class GridCell(Vertical, can_focus=True):
    """One image and its label; focus is the highlight."""

    def __init__(self, item: GridItem, protocol: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item = item
        self.protocol = protocol
        self.thumbnail: PILImage | None = None

    def show(self, image: PILImage, widget_cls: Any) -> None:
        self.thumbnail = image
        self.query_one(".grid-wait", Static).display = False
        widget = widget_cls(image, classes="grid-image")
        self._fit(widget)
        self.query_one(".grid-body").mount(widget)

    def _fit(self, widget: Widget) -> None:
        if self.thumbnail is not None:
            body = self.content_size
            size_image(widget, self.thumbnail, (max(1, body.width - 1), max(1, body.height - 1)), self.protocol)

    def on_resize(self) -> None:
        for widget in self.query(".grid-image"):
            self._fit(widget)

    def compose(self) -> ComposeResult:
        yield Static(Text(self.item.label, no_wrap=True, overflow="ellipsis"), classes="grid-label")
        with Center(classes="grid-body"):
            yield Static("…", classes="grid-wait")


class GridScreen(Screen[None]):
    """Arrows move between cells, enter opens one full screen; table keys act on the highlighted image."""

    BINDINGS = [
        Binding("escape,q", "close", "Back", id="grid.close"),
        Binding("left,h", "move(-1, 0)", "Left", show=False, id="grid.left"),
        Binding("right,l", "move(1, 0)", "Right", show=False, id="grid.right"),
        Binding("up,k", "move(0, -1)", "Up", show=False, id="grid.up"),
        Binding("down,j", "move(0, 1)", "Down", show=False, id="grid.down"),
        Binding("enter,space", "view", "Full screen", id="grid.view"),
        Binding("p", "copy_path", "Copy path", id="grid.copy_path"),
        Binding("y", "copy_url", "Copy URL", show=False, id="grid.copy_url"),
        Binding("c", "copy_prompt", "Copy prompt", show=False, id="grid.copy_prompt"),
        Binding("o", "open", "Open", id="grid.open"),
        Binding("f", "star", "Star", id="grid.star"),
        Binding("r", "rerun", "Re-run", id="grid.rerun"),
        Binding("R", "reference", "Use as reference", id="grid.reference"),
    ]

    def __init__(self, store: HistoryStore, records: Sequence[TaskRecord], protocol: str, title: str) -> None:
        super().__init__()
        self.store = store
        self.records = list(records)
        self.protocol = protocol
        self.title_text = title
        self.items = grid_items(store, self.records)
        self.columns, self.rows = grid_shape(len(self.items))
        self._image_cls = image_widget_class(protocol)
        self.drawn: set[int] = set()  # cells whose thumbnail is on screen (tests and benchmarks read it)

    def compose(self) -> ComposeResult:
        yield Static(Text(plain(self.title_text), no_wrap=True, overflow="ellipsis"), id="grid-title")
        grid = Grid(id="grid")
        grid.styles.grid_size_columns = self.columns
        grid.styles.grid_size_rows = self.rows
        with grid:
            for number, item in enumerate(self.items):
                yield GridCell(item, self.protocol, id=f"cell-{number}", classes="grid-cell")
        yield Static(
            Text("arrows move · enter full screen · p path · o open · f star · r re-run · R reference · esc back"),
            id="grid-hint",
        )

    def on_mount(self) -> None:
        if self.items:
            self.query_one("#cell-0", GridCell).focus()
            if self._image_cls is not None:
                self._load_thumbnails()
            else:
                for number, item in enumerate(self.items):
                    self._wait_label(number).update(Text(plain(item.path.name)))
        else:
            self.mount(Static("No saved images to show.", id="grid-empty"), before="#grid-hint")

    def _wait_label(self, number: int) -> Static:
        return self.query_one(f"#cell-{number} .grid-wait", Static)

    @work(thread=True, exclusive=True, group="grid")
    def _load_thumbnails(self) -> None:
        # Thumbnails already on disk first, shown in one go (one layout pass for all the cells);
        # then the others, decoded a few at a time (Pillow decodes outside the GIL).
        ready: list[int] = []
        missing: list[int] = []
        for number, item in enumerate(self.items):
            (ready if has_thumbnail(item.path, THUMB_SIDE) else missing).append(number)
        loaded = [self._thumbnail(number) for number in ready]
        self.app.call_from_thread(self._put_many, [pair for pair in loaded if pair])
        if not missing:
            return
        with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
            for pair in pool.map(self._thumbnail, missing):
                if pair:
                    self.app.call_from_thread(self._put_many, [pair])

    def _thumbnail(self, number: int) -> tuple[int, PILImage] | None:
        try:
            return number, cached_thumbnail(self.items[number].path, THUMB_SIDE)
        except Exception as exc:  # one bad file is a message in its cell
            self.app.call_from_thread(self._cell_message, number, f"cannot show: {exc}")
            return None

    def _cell_message(self, number: int, text: str) -> None:
        if self.is_attached:
            self._wait_label(number).update(Text(plain(text)))

    def _put_many(self, images: list[tuple[int, PILImage]]) -> None:
        if not self.is_attached or self._image_cls is None:
            return
        with self.app.batch_update():
            for number, image in images:
                self.query_one(f"#cell-{number}", GridCell).show(image, self._image_cls)
                self.drawn.add(number)

    # -- the highlighted cell -----------------------------------------------------------
    @property
    def cursor(self) -> int:
        focused = self.focused
        return int(focused.id.removeprefix("cell-")) if isinstance(focused, GridCell) and focused.id else 0

    @property
    def current(self) -> GridItem | None:
        return self.items[self.cursor] if self.items else None

    def _record(self) -> TaskRecord | None:
        item = self.current
        return self.store.get(item.local_id) if item else None

    def action_move(self, dx: int, dy: int) -> None:
        if not self.items:
            return
        column, row = self.cursor % self.columns, self.cursor // self.columns
        column = min(max(0, column + dx), self.columns - 1)
        row = min(max(0, row + dy), self.rows - 1)
        target = min(row * self.columns + column, len(self.items) - 1)
        self.query_one(f"#cell-{target}", GridCell).focus()

    def action_view(self) -> None:
        item = self.current
        if item is None:
            return
        order = list(dict.fromkeys(i.local_id for i in self.items))
        self.app.push_screen(ViewerScreen(self.store, order, order.index(item.local_id), item.index, self.protocol))

    def action_close(self) -> None:
        self.dismiss(None)

    # -- the table's keys, on the highlighted image ------------------------------------
    @property
    def host(self) -> Any:
        return cast(Any, self.app)  # KlingApp; typed loosely to keep ui.app out of this module's imports

    def action_copy_path(self) -> None:
        if self.current:
            self.host.copy_path(self.current.path)

    def action_copy_url(self) -> None:
        record, item = self._record(), self.current
        if record and item and item.index < len(record.image_urls):
            self.host.copy_url(record.image_urls[item.index])

    def action_copy_prompt(self) -> None:
        record = self._record()
        if record:
            self.host.copy_prompt(record)

    def action_open(self) -> None:
        if self.current:
            self.host.open_path(self.current.path)

    def action_star(self) -> None:
        record = self._record()
        if record is None:
            return
        self.host.star_record(record)
        starred = not record.starred
        for number, item in enumerate(self.items):
            if item.local_id == record.local_id:
                label = item.label.removeprefix("★ ")
                label = ("★ " if starred else "") + label
                self.items[number] = GridItem(item.local_id, item.index, item.path, label)
                self.query_one(f"#cell-{number} .grid-label", Static).update(
                    Text(label, no_wrap=True, overflow="ellipsis")
                )

    def action_rerun(self) -> None:
        record = self._record()
        if record:
            self.host.rerun_record(record)

    def action_reference(self) -> None:
        if self.current:
            self.host.reference_task_image(self.current.local_id, self.current.index + 1)
