"""Small choosers: pick one of a few options by its number, or search past prompts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from kling_tui.base.textsafe import plain

if TYPE_CHECKING:
    from textual.fuzzy import Matcher

    from kling_tui.work.saved_templates import SavedTemplate

T = TypeVar("T")


class QuickPick(ModalScreen[str | None]):
    """Options numbered 1-9 (then a-z): one key picks."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="pick.cancel")]
    KEYS = "123456789abcdefghijklmnopqrstuvwxyz"

    def __init__(self, title: str, options: list[str]) -> None:
        super().__init__()
        self.title_text = title
        self.options = options[: len(self.KEYS)]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text), classes="title")
            yield OptionList(
                *[
                    Option(Text.assemble((f"{self.KEYS[i]}  ", "bold"), plain(option)), id=str(i))
                    for i, option in enumerate(self.options)
                ],
                id="pick",
            )
            yield Static("press a key, or enter · escape to cancel", classes="hint")

    def on_key(self, event) -> None:
        if event.character and event.character in self.KEYS[: len(self.options)]:
            event.stop()
            self.dismiss(self.options[self.KEYS.index(event.character)])

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.options[int(event.option.id or 0)])

    def action_cancel(self) -> None:
        self.dismiss(None)


class SearchPick(ModalScreen[T | None], Generic[T]):
    """Type to filter a list, enter to take the highlighted item; dismisses with its value."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="search.cancel"),
        Binding("down", "move(1)", "Next", show=False, id="search.next"),
        Binding("up", "move(-1)", "Previous", show=False, id="search.previous"),
    ]
    SHOWN = 200
    TITLE = "Search"
    HINT = "enter takes the highlighted item · escape cancels"

    def __init__(self, items: list[tuple[str, T]]) -> None:
        super().__init__()
        self.items = items

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="search-dialog"):
            yield Static(self.TITLE, classes="title")
            yield Input(placeholder="type to filter", id="search", compact=True)
            yield OptionList(id="matches")
            yield Static(self.HINT, classes="hint")

    def on_mount(self) -> None:
        self._fill("")

    def matches(self, needle: str, label: str) -> bool:
        return needle in label.casefold()

    def _fill(self, needle: str) -> None:
        matches = self.query_one("#matches", OptionList)
        matches.clear_options()
        needle = needle.casefold()
        found = [item for item in self.items if self.matches(needle, item[0])][: self.SHOWN]
        self._found = found
        matches.add_options(
            [Option(Text(plain(" ".join(label.split())[:200])), id=str(i)) for i, (label, _) in enumerate(found)]
        )
        if found:
            matches.highlighted = 0

    @on(Input.Changed, "#search")
    def _changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#search")
    def _submitted(self) -> None:
        matches = self.query_one("#matches", OptionList)
        if matches.highlighted is not None and self._found:
            self.dismiss(self._found[matches.highlighted][1])

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._found[int(event.option.id or 0)][1])

    def action_move(self, delta: int) -> None:
        matches = self.query_one("#matches", OptionList)
        if self._found:
            current = matches.highlighted or 0
            matches.highlighted = max(0, min(len(self._found) - 1, current + delta))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PromptSearch(SearchPick[str]):
    """ctrl+r: type to filter past prompts, enter to take one."""

    TITLE = "Past prompts"
    HINT = "enter takes the highlighted prompt · escape cancels"

    def __init__(self, prompts: list[str]) -> None:
        super().__init__([(p, p) for p in prompts])
        self.prompts = prompts


def fuzzy(needle: str, label: str) -> bool:
    """Every word of `needle` is in `label` with its letters in order (gaps allowed)."""
    for word in needle.split():
        rest = iter(label)
        if not all(ch in rest for ch in word):
            return False
    return True


class TaskImagePick(SearchPick[tuple[str, int]]):
    """A fuzzy finder over the images of past tasks; dismisses with (local id, 1-based image)."""

    TITLE = "Reference image from history"
    HINT = "type parts of the prompt, model or id · enter takes the image · escape cancels"

    def matches(self, needle: str, label: str) -> bool:
        return fuzzy(needle, label.casefold())


class TemplatePick(SearchPick["SavedTemplate"]):
    """ctrl+t: the saved templates, matched by name and prompt as the command palette matches."""

    TITLE = "Saved templates"
    HINT = "type parts of the name or prompt · enter puts it in the form · escape cancels"

    def __init__(self, templates: list[SavedTemplate]) -> None:
        super().__init__([(f"{t.name} — {t.body}", t) for t in templates])
        self._matcher: Matcher | None = None

    def matches(self, needle: str, label: str) -> bool:
        if not needle.strip():
            return True
        from textual.fuzzy import Matcher

        if self._matcher is None or self._matcher.query != needle:
            self._matcher = Matcher(needle)
        return self._matcher.match(label) > 0
