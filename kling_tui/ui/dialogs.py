"""Typed modal dialogs: each dismisses with its answer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question), classes="title")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.no} (n)", id="no", compact=True)
                yield Button(f"{self.yes} (y)", id="yes", variant="error", compact=True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class TextDialog(ModalScreen[str | None]):
    """Asks for one line of text (a note, a search)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="text.cancel")]

    def __init__(
        self,
        title: str,
        value: str = "",
        placeholder: str = "",
        *,
        suggester: Suggester | None = None,
        hint: str = "enter to save · escape to cancel",
    ) -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder
        self.suggester, self.hint = suggester, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text), classes="title")
            yield Input(self.value, placeholder=self.placeholder, id="text", compact=True, suggester=self.suggester)
            yield Static(self.hint, classes="hint")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key of the app, by where it works."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close", id="help.close")]

    def __init__(self, sections: Iterable[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        text = Text()
        for title, rows in self.sections:
            text.append(f"{title}\n", style="bold")
            for key, description in rows:
                text.append(f"  {key:<22}", style="bold cyan")
                text.append(f"{description}\n")
            text.append("\n")
        with Vertical(classes="dialog"):
            yield Label("Keys", classes="title")
            with VerticalScroll():
                yield Static(text)
            yield Static("escape to close · ctrl+p opens the command palette", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)


@dataclass
class SetupChoice:
    """What the first-run screen collected."""

    mode: str  # "aksk" | "apikey" | "sandbox"
    access_key: str = ""
    secret_key: str = ""
    api_key: str = ""
    region: str = "singapore"  # "singapore" | "beijing" | "custom"
    base_url: str = ""


class SetupScreen(ModalScreen[SetupChoice | None]):
    """First run: credentials and endpoint, or the sandbox."""

    BINDINGS = [Binding("escape", "cancel", "Quit setup", id="setup.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Connect kling-tui", classes="title")
            yield Static(
                "No credentials found (KLING_ACCESS_KEY + KLING_SECRET_KEY, KLING_API_KEY or the config file).",
                classes="hint",
            )
            with RadioSet(id="setup-mode"):
                yield RadioButton("Access key + secret key", value=True, id="mode-aksk")
                yield RadioButton("API key", id="mode-apikey")
                yield RadioButton("Sandbox (offline, no keys)", id="mode-sandbox")
            yield Input(placeholder="access key", id="access-key", compact=True)
            yield Input(placeholder="secret key", id="secret-key", password=True, compact=True)
            yield Input(placeholder="API key", id="api-key", password=True, classes="hidden", compact=True)
            with RadioSet(id="setup-region"):
                yield RadioButton("Singapore (global)", value=True, id="region-singapore")
                yield RadioButton("Beijing (China)", id="region-beijing")
                yield RadioButton("Custom base URL", id="region-custom")
            yield Input(placeholder="https://…", id="base-url", classes="hidden", compact=True)
            yield Static("", id="setup-error", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Save and connect", id="save", variant="primary", compact=True)

    def _mode(self) -> str:
        pressed = self.query_one("#setup-mode", RadioSet).pressed_button
        return (pressed.id or "mode-aksk").removeprefix("mode-") if pressed else "aksk"

    def _region(self) -> str:
        pressed = self.query_one("#setup-region", RadioSet).pressed_button
        return (pressed.id or "region-singapore").removeprefix("region-") if pressed else "singapore"

    @on(RadioSet.Changed)
    def _changed(self) -> None:
        mode = self._mode()
        self.query_one("#access-key").set_class(mode != "aksk", "hidden")
        self.query_one("#secret-key").set_class(mode != "aksk", "hidden")
        self.query_one("#api-key").set_class(mode != "apikey", "hidden")
        self.query_one("#setup-region").set_class(mode == "sandbox", "hidden")
        self.query_one("#base-url").set_class(mode == "sandbox" or self._region() != "custom", "hidden")

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        mode = self._mode()
        choice = SetupChoice(
            mode=mode,
            access_key=self._value("access-key"),
            secret_key=self._value("secret-key"),
            api_key=self._value("api-key"),
            region=self._region(),
            base_url=self._value("base-url"),
        )
        error = ""
        if mode == "aksk" and not (choice.access_key and choice.secret_key):
            error = "access key and secret key: both are required"
        elif mode == "apikey" and not choice.api_key:
            error = "API key: required"
        elif (
            mode != "sandbox" and choice.region == "custom" and not choice.base_url.startswith(("http://", "https://"))
        ):
            error = "base URL: must start with http:// or https://"
        if error:
            self.query_one("#setup-error", Static).update(Text(error, style="bold red"))
            return
        self.dismiss(choice)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
