"""A one-line drop-down for a short list of values (the form's model, mode, ratio, ...).

Textual's Select builds its option list, a scrolling widget of its own, for every instance at
mount: about 8 ms each, the largest single cost of the form's first frame. A Choice is one
widget that draws a line; its list is built when it is opened.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Region
from textual.message import Message
from textual.reactive import var
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import OptionList

ARROW = " ▼ "
MENU_MAX_HEIGHT = 12


class Choice(Widget, can_focus=True):
    """Shows the chosen option; enter, space, up/down or a click opens the list."""

    DEFAULT_CSS = """
    Choice {
        height: 1;
        width: 1fr;
        background: $surface;
        color: $foreground;
        pointer: pointer;
        &:focus { background-tint: $foreground 5%; }
        & > .choice--arrow { color: $foreground 50%; }
    }
    """
    COMPONENT_CLASSES = {"choice--arrow"}
    BINDINGS = [Binding("enter,space,down,up", "open", "Choose", show=False)]

    value: var[str] = var("", init=False)

    class Changed(Message):
        """The value changed (by the user or by code)."""

        def __init__(self, choice: Choice, value: str) -> None:
            super().__init__()
            self.choice = choice
            self.value = value

        @property
        def control(self) -> Choice:
            return self.choice

    def __init__(
        self,
        options: Iterable[tuple[str, str]],
        value: str,
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._options: list[tuple[str, str]] = list(options)
        self.set_reactive(Choice.value, self._checked(value))

    @property
    def options(self) -> list[tuple[str, str]]:
        """(label, value) pairs, in order."""
        return list(self._options)

    def set_options(self, options: Iterable[tuple[str, str]]) -> None:
        """Offer other options; the value becomes the first of them unless it is among them."""
        self._options = list(options)
        if self.value not in self._values():
            self.value = self._options[0][1] if self._options else ""
        self.refresh()

    def _values(self) -> list[str]:
        return [value for _, value in self._options]

    def _checked(self, value: str) -> str:
        if self._options and value not in self._values():
            raise ValueError(f"{value!r} is not one of the options of #{self.id}")
        return value

    def validate_value(self, value: str) -> str:
        return self._checked(value)

    def watch_value(self, value: str) -> None:
        self.post_message(self.Changed(self, value))

    def render(self) -> Text:
        label = next((text for text, value in self._options if value == self.value), self.value)
        room = max(0, self.content_size.width - len(ARROW))
        arrow_style = self.get_component_rich_style("choice--arrow")
        return Text.assemble(label[:room].ljust(room), (ARROW, arrow_style), no_wrap=True)

    def action_open(self) -> None:
        if not self._options:
            return

        def chosen(value: str | None) -> None:
            if value is not None:
                self.value = value
            self.focus()

        self.app.push_screen(ChoiceMenu(self._options, self.value, self.region), chosen)

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.action_open()


class ChoiceMenu(ModalScreen[str | None]):
    """A Choice's options, drawn over the form just below it (above it near the bottom)."""

    # Its see-through background is in app.tcss: set here, below ModalScreen's, it did not take.
    DEFAULT_CSS = """
    ChoiceMenu {
        & > #choice-menu {
            height: auto;
            max-height: 12;
            border: tall $border;
            background: $surface;
            & > OptionList {
                height: auto;
                max-height: 10;
                border: none;
                padding: 0;
                & > .option-list--option { padding: 0 1; }
            }
        }
    }
    """
    BINDINGS = [Binding("escape", "dismiss_menu", "Close", show=False)]

    def __init__(self, options: list[tuple[str, str]], value: str, anchor: Region) -> None:
        super().__init__()
        self._options = options
        self._value = value
        self._anchor = anchor

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-menu"):
            yield OptionList(*(Text(label) for label, _ in self._options))

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        values = [value for _, value in self._options]
        menu.highlighted = values.index(self._value) if self._value in values else 0
        height = min(len(self._options), MENU_MAX_HEIGHT - 2) + 2  # the border's rows
        below = self._anchor.bottom
        top = below if below + height <= self.size.height else max(0, self._anchor.y - height)
        box = self.query_one("#choice-menu")
        box.styles.offset = (self._anchor.x, top)
        box.styles.width = max(self._anchor.width, 12)
        menu.focus()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self._options[event.option_index][1])

    def action_dismiss_menu(self) -> None:
        self.dismiss(None)

    def on_click(self, event: events.Click) -> None:
        # A click outside the list closes it, as a click elsewhere closes a drop-down.
        if event.widget is self:
            self.dismiss(None)
