"""Expanding (outpainting) an image: the four sides, presets, and the new size before sending."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from kling_tui.api.errors import Problem
from kling_tui.api.types import ExpandRequest, Parent
from kling_tui.api.validation import EXPAND_AREA_MAX, EXPAND_SIDES, expanded_size, validate_expand
from kling_tui.base.textsafe import plain

# Stands in for the image while the sides are checked as you type (the file is read on sending).
_ANY_IMAGE = "https://local.invalid/image.png"


@dataclass(frozen=True)
class Preset:
    label: str
    ratio: float | None = None  # a target width / height, grown around the image
    sides: tuple[float, float, float, float] | None = None  # fixed (left, right, up, down)


PRESETS = (
    Preset("16:9 around it", ratio=16 / 9),
    Preset("9:16 around it", ratio=9 / 16),
    Preset("1:1 around it", ratio=1.0),
    Preset("4:3 around it", ratio=4 / 3),
    Preset("2x wider", sides=(0.5, 0.5, 0, 0)),
    Preset("2x taller", sides=(0, 0, 0.5, 0.5)),
    Preset("zoom out 1.5x", sides=(0.25, 0.25, 0.25, 0.25)),
)
SIDE_ORDER = ("left", "right", "up", "down")


def preset_sides(preset: Preset, size: tuple[int, int] | None) -> tuple[float, float, float, float] | None:
    """(left, right, up, down) for a preset; None for a ratio preset when the size is unknown."""
    if preset.sides is not None:
        return preset.sides
    if size is None or preset.ratio is None:
        return None
    width, height = size
    # Four decimals: within a pixel of the ratio up to ~10,000 px; a sliver of less is no expansion.
    if width / height < preset.ratio:  # too narrow: grow left and right equally
        each = round((height * preset.ratio / width - 1) / 2, 4)
        each = each if each >= 0.002 else 0.0
        return (each, each, 0.0, 0.0)
    each = round((width / preset.ratio / height - 1) / 2, 4)
    each = each if each >= 0.002 else 0.0
    return (0.0, 0.0, each, each)


class ExpandDialog(ModalScreen[ExpandRequest | None]):
    """Dismisses with the expansion to send, or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="expand.cancel"),
        Binding("ctrl+j,alt+enter", "send", "Send", priority=True, id="expand.send"),
    ]

    def __init__(self, source: str, label: str, size: tuple[int, int] | None, parent: Parent | None = None) -> None:
        super().__init__()
        self.source, self.label, self.image_size, self.lineage = source, label, size, parent

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="expand-dialog"):
            yield Static(Text(f"Expand {plain(self.label)}"), classes="title")
            yield Label("Presets (a digit picks one)", classes="field-label")
            yield OptionList(
                *[
                    Option(Text.assemble((f"{i}  ", "bold"), preset.label), id=str(i - 1))
                    for i, preset in enumerate(PRESETS, start=1)
                ],
                id="presets",
                compact=True,
            )
            yield Label("Grow each side by a share of the image (0 to 2)", classes="field-label")
            with Horizontal(classes="row"):
                for side in SIDE_ORDER:
                    with Vertical(classes="quarter"):
                        yield Label(side.capitalize(), classes="field-label")
                        yield Input("0", id=f"side-{side}", type="number", compact=True)
            with Horizontal(classes="row"):
                with Vertical(classes="wide"):
                    yield Label("Prompt (optional)", classes="field-label")
                    yield Input(placeholder="what to fill the new area with", id="expand-prompt", compact=True)
                with Vertical(classes="quarter"):
                    yield Label("n (1-9)", classes="field-label")
                    yield Input("1", id="expand-n", type="integer", max_length=1, compact=True)
            yield Static("", id="expand-size")
            yield Static("", id="expand-problems")
            with Horizontal(classes="buttons"):
                yield Button("Cancel (esc)", id="cancel", compact=True)
                yield Button("Send (ctrl+j)", id="send", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#presets", OptionList).focus()
        self._update()

    # -- reading the sides -------------------------------------------------------------
    def _sides(self) -> tuple[dict[str, float], list[Problem]]:
        ratios: dict[str, float] = {}
        problems: list[Problem] = []
        for side in SIDE_ORDER:
            text = self.query_one(f"#side-{side}", Input).value.strip() or "0"
            try:
                ratios[side] = float(text)
            except ValueError:
                problems.append(Problem(f"{side}_expansion_ratio", f"must be a number from 0 to 2 (got {text!r})"))
        return ratios, problems

    def _request(self) -> tuple[ExpandRequest | None, list[Problem]]:
        ratios, problems = self._sides()
        n_text = self.query_one("#expand-n", Input).value.strip() or "1"
        try:
            n = int(n_text)
        except ValueError:
            problems.append(Problem("n", f"must be an integer (got {n_text!r})"))
            n = 1
        if problems:
            return None, problems
        request = ExpandRequest(
            image=self.source,
            up_expansion_ratio=ratios["up"],
            down_expansion_ratio=ratios["down"],
            left_expansion_ratio=ratios["left"],
            right_expansion_ratio=ratios["right"],
            prompt=self.query_one("#expand-prompt", Input).value.strip() or None,
            n=n,
            parents=[self.lineage] if self.lineage else [],
        )
        payload = {**request.params(), "image": _ANY_IMAGE}
        for side in EXPAND_SIDES:
            payload.setdefault(f"{side}_expansion_ratio", 0.0)
        return request, [p for p in validate_expand(payload) if p.field != "image"]

    def _update(self) -> None:
        ratios, _ = self._sides()
        if self.image_size is None:
            size_line = "original size unknown until the image is saved"
        else:
            width, height = self.image_size
            new_width, new_height = expanded_size(width, height, ratios)
            size_line = f"{width}×{height} → {new_width}×{new_height} px"
        if len(ratios) == len(SIDE_ORDER):
            area = (1 + ratios["left"] + ratios["right"]) * (1 + ratios["up"] + ratios["down"])
            size_line += f" · {area:.2f}× the area (at most {EXPAND_AREA_MAX:g}×)"
        self.query_one("#expand-size", Static).update(Text(size_line))
        _, problems = self._request()
        text = Text()
        for problem in problems:
            text.append(plain(f"✗ {problem.field}: {problem.rule}") + "\n")
        if any(p.field == "expansion_ratio" for p in problems):
            text.append("  Grow fewer sides, or each by less: (1 + left + right) × (1 + up + down) must stay ≤ 3.\n")
        self.query_one("#expand-problems", Static).update(text)

    def fill(self, params: dict) -> None:
        """Start from a recorded expansion's sides, prompt and n (`e` on an expansion task)."""
        for side in SIDE_ORDER:
            value = params.get(f"{side}_expansion_ratio")
            if isinstance(value, (int, float)):
                self.query_one(f"#side-{side}", Input).value = f"{value:g}"
        self.query_one("#expand-prompt", Input).value = str(params.get("prompt") or "")
        self.query_one("#expand-n", Input).value = str(params.get("n") or 1)
        self._update()

    # -- events ------------------------------------------------------------------------
    def apply_preset(self, number: int) -> None:
        """Fill the sides from preset `number` (1-based)."""
        preset = PRESETS[number - 1]
        sides = preset_sides(preset, self.image_size)
        if sides is None:
            self.notify("The original size is not known yet: set the sides by hand.", severity="warning")
            return
        for side, value in zip(SIDE_ORDER, sides):
            self.query_one(f"#side-{side}", Input).value = f"{value:g}"
        self._update()
        if not any(sides):
            self.notify(f"The image is already about {preset.label.split()[0]}.", timeout=3)

    def on_key(self, event) -> None:
        presets = self.query_one("#presets", OptionList)
        character = event.character
        if self.focused is presets and character and character.isdigit() and 1 <= int(character) <= len(PRESETS):
            event.stop()
            presets.highlighted = int(character) - 1  # the list shows which preset the sides come from
            self.apply_preset(int(character))

    @on(OptionList.OptionSelected, "#presets")
    def _preset_selected(self, event: OptionList.OptionSelected) -> None:
        self.apply_preset(int(event.option.id or 0) + 1)

    @on(Input.Changed)
    def _changed(self) -> None:
        self._update()

    @on(Input.Submitted)
    @on(Button.Pressed, "#send")
    def action_send(self) -> None:
        request, problems = self._request()
        if request is None or problems:
            self._update()
            self.notify("Not sent: see the problems in the dialog.", severity="error")
            return
        self.dismiss(request)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
