"""Two tasks side by side: their images, and their parameters with the differences marked."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from kling_tui.base.textdiff import param_differences, word_diff
from kling_tui.base.textsafe import plain
from kling_tui.history.store import TaskRecord
from kling_tui.ui.preview import PreviewCache, image_widget_class


def prompt_diff(left: str, right: str) -> tuple[Text, Text]:
    """The two prompts with removed words marked on the left and added ones on the right."""
    old, new = Text(), Text()
    for op, piece in word_diff(plain(left, keep_newlines=True), plain(right, keep_newlines=True)):
        if op == "same":
            old.append(piece)
            new.append(piece)
        elif op == "removed":
            old.append(piece, style="bold red strike")
        else:
            new.append(piece, style="bold green")
    return old, new


def params_table(left: TaskRecord, right: TaskRecord) -> Table:
    table = Table(expand=True, show_edge=False, pad_edge=False)
    table.add_column("field", style="bold")
    table.add_column(Text(f"A · {left.local_id}"))
    table.add_column(Text(f"B · {right.local_id}"))
    old, new = prompt_diff(left.prompt, right.prompt)
    table.add_row("prompt", old, new)
    differing = {name for name, _, _ in param_differences(left.params, right.params)}
    for name in sorted((set(left.params) | set(right.params)) - {"prompt"}):
        style = "bold yellow" if name in differing else ""
        table.add_row(
            Text(plain(name), style=style),
            Text(plain(left.params.get(name, "—")), style=style),
            Text(plain(right.params.get(name, "—")), style=style),
        )
    rows = [("status", left.status, right.status), ("units", left.units, right.units)]
    if left.parent_id or right.parent_id:
        rows.append(("made from", _parent(left, right, "B"), _parent(right, left, "A")))
    for label, a, b in rows:
        style = "bold yellow" if a != b else ""
        table.add_row(Text(label, style=style), Text(plain(a or "—"), style=style), Text(plain(b or "—"), style=style))
    return table


def _parent(record: TaskRecord, other: TaskRecord, other_side: str) -> str | None:
    """Where `record` came from: the other side, or a task by its local id."""
    if record.parent_id is None:
        return None
    return f"{other_side} (its original)" if record.parent_id == other.local_id else record.parent_id


class CompareScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,v", "close", "Close", id="compare.close")]

    def __init__(self, left: TaskRecord, right: TaskRecord, left_dir: Path, right_dir: Path, protocol: str) -> None:
        super().__init__()
        self.records = (left, right)
        self.dirs = (left_dir, right_dir)
        self.protocol = protocol
        self.cache = PreviewCache(size=4)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="compare-dialog"):
            yield Static("Compare tasks", classes="title")
            with Horizontal(id="compare-images"):
                for side in ("a", "b"):
                    with Vertical(classes="compare-side", id=f"side-{side}"):
                        yield Static("", classes="compare-caption", id=f"caption-{side}")
            with VerticalScroll(id="compare-params"):
                yield Static(params_table(*self.records))
            yield Static("escape to close", classes="hint")

    def on_mount(self) -> None:
        for side, record, folder in zip("ab", self.records, self.dirs):
            first = folder / record.image_paths[0] if record.image_paths else None
            caption = plain(f"{side.upper()} · {record.model or ''} · {record.aspect_ratio or ''} · {record.status}")
            self.query_one(f"#caption-{side}", Static).update(Text(caption))
            if first is not None and first.exists() and image_widget_class(self.protocol) is not None:
                self._load(side, first)

    @work(thread=True, group="compare")
    def _load(self, side: str, path: Path) -> None:
        image = self.cache.load(path)
        self.app.call_from_thread(self._put, side, image)

    def _put(self, side: str, image) -> None:
        widget_cls = image_widget_class(self.protocol)
        if widget_cls is not None:
            self.query_one(f"#side-{side}").mount(widget_cls(image, classes="compare-image"))

    def action_close(self) -> None:
        self.dismiss(None)
