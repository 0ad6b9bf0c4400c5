"""The Omni form's reference images: a numbered list, and the prompt's <<<image_N>>> kept in step with it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from kling_tui.api.validation import REFERENCE_RE
from kling_tui.base.textsafe import plain

if TYPE_CHECKING:
    from kling_tui.api.types import Parent

# What a <<<image_N>>> becomes when its image is removed: it matches no image, so the form
# flags it instead of letting it point at the image that moved into its place.
REMOVED_MARK = "<<<image_?>>>"
LABEL_WIDTH = 48


@dataclass(frozen=True)
class Reference:
    """One input image of an Omni request."""

    source: str  # a local path or an http(s) URL, as OmniRequest takes it
    label: str  # what the list shows: a file name, a URL, "task <id> image N"
    parent: Parent | None = None  # (local id, 1-based image) when it is an image of a past task

    @classmethod
    def of(cls, value: str) -> Reference:
        """A file or URL the user typed."""
        value = value.strip()
        if value.startswith(("http://", "https://")):
            return cls(value, value)
        return cls(value, Path(value).name or value)

    @classmethod
    def of_task(cls, source: str, local_id: str, image: int) -> Reference:
        return cls(source, f"task {local_id} image {image}", (local_id, image))


def short(text: str, width: int = LABEL_WIDTH) -> str:
    text = plain(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def remap_images(prompt: str, mapping: Callable[[int], int | None]) -> str:
    """The prompt with each <<<image_N>>> renumbered by `mapping` (None: the image is gone)."""

    def swap(match: re.Match[str]) -> str:
        if match.group(1) != "image":
            return match.group(0)
        new = mapping(int(match.group(2)))
        return REMOVED_MARK if new is None else f"<<<image_{new}>>>"

    return REFERENCE_RE.sub(swap, prompt)


def after_removal(prompt: str, removed: int) -> str:
    """Image `removed` (1-based) left the list: later ones move up one, references to it are marked."""
    return remap_images(prompt, lambda n: None if n == removed else n - 1 if n > removed else n)


def after_swap(prompt: str, a: int, b: int) -> str:
    """Images `a` and `b` (1-based) traded places."""
    return remap_images(prompt, lambda n: b if n == a else a if n == b else n)


def parents_of(references: Iterable[Reference]) -> list[Parent]:
    """The lineage to record: every history image among the references, once each, in order."""
    return list(dict.fromkeys(r.parent for r in references if r.parent is not None))


class ReferenceList(OptionList):
    """The numbered reference images; keys add, remove and reorder them."""

    BINDINGS = [
        Binding("a", "add('path')", "Add file or URL", id="references.add"),
        Binding("t", "add('history')", "Add from history", id="references.history"),
        Binding("d,delete", "remove", "Remove", id="references.remove"),
        Binding("K", "move(-1)", "Move up", id="references.up"),
        Binding("J", "move(1)", "Move down", id="references.down"),
    ]

    class AddRequested(Message):
        def __init__(self, where: str) -> None:
            super().__init__()
            self.where = where  # "path" or "history"

    class RemoveRequested(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index  # 0-based

    class MoveRequested(Message):
        def __init__(self, index: int, delta: int) -> None:
            super().__init__()
            self.index, self.delta = index, delta

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.references: list[Reference] = []

    def show(self, references: list[Reference], highlight: int | None = None) -> None:
        self.references = list(references)
        self.clear_options()
        if not references:
            self.add_option(Option(Text("no images yet: a adds a file or URL, t one from history"), disabled=True))
            return
        self.add_options(
            [
                Option(Text.assemble((f"{i}  ", "bold"), short(ref.label)), id=str(i))
                for i, ref in enumerate(references, start=1)
            ]
        )
        if highlight is not None:
            self.highlighted = max(0, min(highlight, len(references) - 1))

    def action_add(self, where: str) -> None:
        self.post_message(self.AddRequested(where))

    def action_remove(self) -> None:
        if self.references and self.highlighted is not None:
            self.post_message(self.RemoveRequested(self.highlighted))

    def action_move(self, delta: int) -> None:
        if self.references and self.highlighted is not None:
            self.post_message(self.MoveRequested(self.highlighted, delta))


class ReferenceInputDialog(ModalScreen[str | None]):
    """Asks for a local image path (completed as you type) or an https:// URL."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="reference_input.cancel")]

    def __init__(self, suggester: Suggester | None = None) -> None:
        super().__init__()
        self.suggester = suggester

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Add a reference image", classes="title")
            yield Input(
                placeholder="local .jpg/.png path or https:// URL",
                id="reference-source",
                suggester=self.suggester,
                compact=True,
            )
            yield Static("enter adds it · right arrow takes the completion · escape cancels", classes="hint")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReferenceCompletion(ModalScreen[int | None]):
    """`@` in the prompt: the references, to insert one as <<<image_N>>>; dismisses with its number."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="completion.cancel")]

    def __init__(self, references: list[Reference], at: tuple[int, int] = (0, 0)) -> None:
        super().__init__()
        self.references = references
        self.at = at

    def compose(self) -> ComposeResult:
        with Vertical(id="completion"):
            yield OptionList(
                *[
                    Option(Text.assemble((f"{i} ", "bold"), short(ref.label, 40)), id=str(i))
                    for i, ref in enumerate(self.references, start=1)
                ],
                id="completion-list",
            )

    def on_mount(self) -> None:
        box = self.query_one("#completion")
        x, y = self.at
        width, height = self.app.size
        rows = min(len(self.references), 10) + 2
        if y + rows > height:  # no room below the cursor: open above it
            y = max(0, y - rows - 1)
        box.styles.offset = (max(0, min(x, width - 48)), y)
        self.query_one(OptionList).highlighted = 0

    def on_key(self, event) -> None:
        if event.character and event.character.isdigit() and 1 <= int(event.character) <= len(self.references):
            event.stop()
            self.dismiss(int(event.character))

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 1))

    def action_cancel(self) -> None:
        self.dismiss(None)
