"""Units spent per day and per model, and what is left in the resource packs."""

from __future__ import annotations

from collections import defaultdict

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from kling_tui.api.types import ResourcePack
from kling_tui.base.textsafe import plain

Totals = list[tuple[str, str, int, int, float]]


def totals_table(totals: Totals) -> Table:
    table = Table(expand=True, show_edge=False)
    table.add_column("day")
    table.add_column("model")
    table.add_column("tasks", justify="right")
    table.add_column("images", justify="right")
    table.add_column("units", justify="right")
    for day, model, tasks, images, units in totals:
        table.add_row(day, Text(plain(model)), str(tasks), str(images), f"{units:g}")
    return table


def model_table(totals: Totals) -> Table:
    by_model: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for _, model, tasks, images, units in totals:
        entry = by_model[model]
        entry[0] += tasks
        entry[1] += images
        entry[2] += units
    table = Table(expand=True, show_edge=False)
    table.add_column("model")
    table.add_column("tasks", justify="right")
    table.add_column("images", justify="right")
    table.add_column("units", justify="right")
    for model, (task_count, image_count, unit_count) in sorted(by_model.items(), key=lambda kv: -kv[1][2]):
        table.add_row(Text(plain(model)), f"{task_count:g}", f"{image_count:g}", f"{unit_count:g}")
    grand = sum(v[2] for v in by_model.values())
    table.add_row(Text("all", style="bold"), "", "", Text(f"{grand:g}", style="bold"))
    return table


def packs_text(packs: list[ResourcePack] | None) -> Text:
    if packs is None:
        return Text("Remaining units: not known yet.", style="dim")
    text = Text()
    for pack in packs:
        text.append(f"{plain(pack.name)}: ", style="bold")
        text.append(f"{pack.remaining:g} of {pack.total:g} left ({plain(pack.status)})\n")
    return text or Text("No resource packs.")


class SummaryScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,u", "close", "Close", id="summary.close")]

    def __init__(self, totals: Totals, packs: list[ResourcePack] | None) -> None:
        super().__init__()
        self.totals = totals
        self.packs = packs

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="summary-dialog"):
            yield Static("Units", classes="title")
            with VerticalScroll():
                yield Static(packs_text(self.packs))
                yield Static(Text("By model", style="bold"))
                yield Static(model_table(self.totals))
                yield Static(Text("\nBy day", style="bold"))
                yield Static(totals_table(self.totals))
            yield Static("escape to close", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
