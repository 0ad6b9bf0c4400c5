"""The values of a prompt template's `{{name}}` variables: one row per variable, comma-separated.

The form mounts it only once the prompt has a template, so a plain form starts without it.
Values typed for a variable stay when it leaves the prompt and come back if it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, Input, Label

from kling_tui.base.textsafe import plain
from kling_tui.work.templates import split_values

INPUT_PREFIX = "var-"  # the ids of the value inputs; the draft keeps them under these keys
ROW_PREFIX = "template-row-"


class TemplateValues(Vertical):
    """Rows of `{{name}}  [red, green]` and the zip toggle."""

    DEFAULT_CSS = """
    TemplateValues, TemplateValues #template-rows { height: auto; }
    TemplateValues .template-row { height: 1; }
    TemplateValues .template-name { width: auto; max-width: 50%; padding-right: 1; color: $text-muted; }
    TemplateValues #template-zip { border: none; padding: 0; background: transparent; margin-top: 1; }
    """

    def __init__(
        self, names: Iterable[str], kept: Mapping[str, str] | None = None, zipped: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._kept: dict[str, str] = dict(kept or {})  # variable name -> its raw text
        self.names: list[str] = list(dict.fromkeys(names))
        self._zipped = zipped
        self._mounting: set[str] = set()  # rows asked for, maybe not mounted yet

    def compose(self) -> ComposeResult:
        yield Label("Template values", classes="field-label")
        with Vertical(id="template-rows"):
            yield from (self._row(name) for name in self.names)
        yield Checkbox("Zip (pair values, not all combinations)", self._zipped, id="template-zip")

    def show_variables(self, names: Iterable[str]) -> None:
        """One row per variable: rows of gone variables hidden (kept with their text, so a
        variable typed back in finds it), new ones added below."""
        names = list(dict.fromkeys(names))
        if not self.query("#template-rows"):  # not composed yet: compose shows self.names
            self.names = names
            return
        if names == self.names:
            return
        self.names = names
        # Rows mounted by an earlier call may not be children yet: _mounting remembers them.
        new = [name for name in names if name not in self._typed() and name not in self._mounting]
        self._mounting.update(new)
        self.query_one("#template-rows", Vertical).mount_all(self._row(name) for name in new)
        self._show_rows()
        self.call_after_refresh(self._show_rows)  # rows still mounting, too

    def _show_rows(self) -> None:
        for row in self.query(".template-row"):
            row.display = (row.id or "").removeprefix(ROW_PREFIX) in self.names

    def _row(self, name: str) -> Horizontal:
        return Horizontal(
            Label(Text(plain(f"{{{{{name}}}}}")), classes="template-name"),
            Input(
                self._kept.get(name, ""),
                placeholder="comma-separated: a, b, c",
                id=f"{INPUT_PREFIX}{name}",
                compact=True,
            ),
            id=f"{ROW_PREFIX}{name}",
            classes="template-row",
        )

    def use(self, values: Mapping[str, Sequence[str]], zipped: bool) -> None:
        """Fill in saved values (commas inside a value escaped) and the zip toggle."""
        texts = {name: ", ".join(v.replace(",", "\\,") for v in items) for name, items in values.items()}
        self._kept.update(texts)
        self._zipped = zipped
        for name in texts.keys() & self._typed().keys():
            self.query_one(f"#{INPUT_PREFIX}{name}", Input).value = texts[name]
        for checkbox in self.query("#template-zip").results(Checkbox):
            checkbox.value = zipped

    def raw(self) -> dict[str, str]:
        """Each shown variable's text as typed."""
        return {name: self.query_one(f"#{INPUT_PREFIX}{name}", Input).value for name in self._shown()}

    def values(self) -> dict[str, list[str]]:
        return {name: split_values(text) for name, text in self.raw().items()}

    @property
    def zipped(self) -> bool:
        toggle = next(self.query("#template-zip").results(Checkbox), None)
        return toggle.value if toggle is not None else self._zipped

    def _shown(self) -> list[str]:
        # Rows are mounted after show_variables returns: read only those already there.
        return [n for n in self.names if self.query(f"#{INPUT_PREFIX}{n}")]

    def _typed(self) -> dict[str, str]:
        """The text of every row mounted, shown or hidden."""
        return {
            (i.id or "").removeprefix(INPUT_PREFIX): i.value for i in self.query(".template-row Input").results(Input)
        }

    def kept(self) -> dict[str, str]:
        """Every variable's text, shown or not (the draft keeps them)."""
        return {**self._kept, **self._typed()}
