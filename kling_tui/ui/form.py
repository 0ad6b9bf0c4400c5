"""The request form: every field of the spec, shaped by the chosen model's capabilities."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.suggester import Suggester
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, SelectionList, Static, TextArea

from kling_tui.api.capabilities import OMNI_IMAGE, Capabilities, ModelCaps
from kling_tui.api.errors import Problem
from kling_tui.api.validation import PROMPT_MAX, SERIES_MAX, SERIES_MIN, images_made
from kling_tui.base.textsafe import plain
from kling_tui.ui.choice import Choice
from kling_tui.ui.deferred import Deferred, Opener
from kling_tui.ui.references import (
    REMOVED_MARK,
    Reference,
    ReferenceCompletion,
    ReferenceInputDialog,
    ReferenceList,
    after_removal,
    after_swap,
    parents_of,
)

if TYPE_CHECKING:
    from kling_tui.api.types import GenerationRequest, MultiImageRequest, OmniRequest
    from kling_tui.ui.template_values import TemplateValues
    from kling_tui.work.variants import FanOut

    FormRequest = GenerationRequest | MultiImageRequest | OmniRequest
W = TypeVar("W", bound=Widget)

NO_REFERENCE = "none"
SUBJECT_FIELDS = tuple(f"subject-{i}" for i in range(1, 5))
ZIP_KEY = "template-zip"  # the draft's key for the values table's Zip toggle
# The fields inside Deferred groups (see GenerationForm.compose).
DEFERRED_FIELDS = frozenset(
    {*SUBJECT_FIELDS, "scene", "style", "elements", "series-amount", "result-type", "references"}
    | {"reference", "image-fidelity", "human-fidelity"}
)
# The fields behind "Advanced", built when it is opened (or a draft or task fills them).
ADVANCED_FIELDS = frozenset({"external-id", "callback"})
# The hints under fields, in the order they stand: (id, the widget they follow, classes).
# Each is mounted the first time it has something to say; most never do.
HINTS = (
    ("negative-hint", "negative", "hint"),
    ("model-hint", "model-row", "hint"),
    ("model-warning", "model-row", "hint warning"),
    ("omni-hint", "omni-fields", "hint"),
    ("image-hint", "image", "hint"),
)
# Form input id -> request field, for fields that are plain text inputs.
TEXT_FIELDS = {
    "negative": "negative_prompt",
    "image": "image",
    "external-id": "external_task_id",
    "callback": "callback_url",
    "scene": "scene_image",
    "style": "style_image",
}
# Request field -> the widget that shows its problems.
FIELD_WIDGET = {
    "prompt": "prompt",
    "negative_prompt": "negative",
    "image": "image",
    "image_reference": "reference",
    "image_fidelity": "image-fidelity",
    "human_fidelity": "human-fidelity",
    "resolution": "resolution",
    "aspect_ratio": "aspect",
    "n": "n",
    "external_task_id": "external-id",
    "callback_url": "callback",
    "scene_image": "scene",
    "style_image": "style",
    "model_name": "model",
    "image_list": "references",
    "element_list": "elements",
    "result_type": "result-type",
    "series_amount": "series-amount",
}
MODES = (("text/image", "generation"), ("multi-image", "multi"), ("omni: edit, combine", "omni"))


class PathSuggester(Suggester):
    """Completes local file paths as you type (URLs are left alone)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value or value.startswith(("http://", "https://")):
            return None
        expanded = os.path.expanduser(value)
        folder, prefix = os.path.split(expanded)
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            return None
        for name in names:
            if name.startswith(prefix) and name != prefix and not name.startswith("."):
                full = os.path.join(folder, name)
                suffix = "/" if os.path.isdir(full) else ""
                return value + name[len(prefix) :] + suffix
        return None


class PromptArea(TextArea):
    """The prompt editor, with shell-like history: up on the first line, down on the last."""

    BINDINGS = [Binding("ctrl+r", "search_history", "Search past prompts", id="prompt.search")]

    class SearchRequested(Message):
        """ctrl+r: the user wants to pick a past prompt."""

    class AtTyped(Message):
        """`@` was just typed: the form may offer its references."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.past_prompts: list[str] = []  # newest first
        self._position = -1
        self._stash = ""

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0 and self._position + 1 < len(self.past_prompts):
            if self._position == -1:
                self._stash = self.text
            self._position += 1
            self._recall(self.past_prompts[self._position])
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last_line = self.document.line_count - 1
        if not select and self.cursor_location[0] == last_line and self._position >= 0:
            self._position -= 1
            self._recall(self._stash if self._position == -1 else self.past_prompts[self._position])
            return
        super().action_cursor_down(select)

    def _recall(self, text: str) -> None:
        self.text = text
        self.move_cursor(self.document.end)

    def remember(self, prompt: str) -> None:
        """A prompt was just submitted: it becomes the newest history entry."""
        if prompt.strip():
            self.past_prompts = [prompt] + [p for p in self.past_prompts if p != prompt]
        self._position = -1

    def action_search_history(self) -> None:
        self.post_message(self.SearchRequested())

    async def _on_key(self, event: events.Key) -> None:
        await super()._on_key(event)
        if event.character == "@" and not self.read_only:
            self.post_message(self.AtTyped())


class GenerationForm(VerticalScroll, can_focus=False):
    """Collects a request; validates it inline with the core's rules.

    Not focusable itself: its fields are, and focusing one scrolls it into view. So the prompt
    is the screen's first focusable widget and gets the focus on start, with no detour.
    """

    class SubmitRequested(Message):
        """The user asked to submit the form's request."""

    class DraftChanged(Message):
        def __init__(self, values: dict[str, Any]) -> None:
            super().__init__()
            self.values = values

    def __init__(
        self,
        caps: Capabilities,
        draft: dict[str, Any] | None = None,
        *,
        retired: Mapping[str, dt.date] | None = None,
        today: Callable[[], dt.date] = dt.date.today,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.caps = caps
        self._draft = draft or {}
        self._validate_timer: Timer | None = None
        self.problems: list[Problem] = []
        self._ready = False
        self._shown_for: tuple[str, ...] = ()
        self._pending_selects: dict[str, Any] = {}
        # Values for fields not built yet (see build_deferred), by widget id; "references" too.
        self._held: dict[str, Any] = {}
        self.deferred_ready = False
        self.variants_ready = False  # the variant fields are built when the user opens them
        self.advanced_ready = False  # so are the advanced ones (see ADVANCED_FIELDS)
        self._hints: dict[str, Static] = {}  # the hints mounted so far (see HINTS)
        self._fields: dict[str, Widget] = {}  # widgets by id, once found (see _field)
        # Models the service said are discontinued (with the day it did), and the date they are judged by.
        self.retired: dict[str, dt.date] = dict(retired or {})
        self.today = today
        self.default_name = caps.preferred_model(today(), frozenset(self.retired))
        default = caps.models[self.default_name]
        # The options each Choice shows now (see _set_options); composed with the default model's.
        self._options: dict[str, tuple[str, ...]] = {
            "aspect": tuple(default.aspect_ratios),
            "resolution": tuple(default.resolutions),
            "reference": (NO_REFERENCE, "subject", "face"),
            "result-type": ("single",),
        }

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        caps = self.caps
        with Horizontal(classes="row", id="prompt-row"):
            yield Label("Prompt", classes="field-label")
            yield Label("", id="prompt-count", classes="field-label")
        yield PromptArea("", id="prompt", soft_wrap=True, show_line_numbers=False, tab_behavior="focus", compact=True)
        yield Label("Negative prompt", classes="field-label", id="negative-label")
        yield Input(placeholder="what to avoid", id="negative", compact=True)
        with Horizontal(classes="row", id="model-row"):
            with Vertical(classes="half"):
                yield Label("Model", classes="field-label")
                yield Choice(
                    [(m, m) for m in caps.models_for("generations")],
                    value=self.default_name,
                    id="model",
                )
            with Vertical(classes="half"):
                yield Label("Mode", classes="field-label")
                yield Choice(
                    list(MODES),
                    value="generation",
                    id="mode",
                )
        with Horizontal(classes="row"):
            with Vertical(classes="third"):
                yield Label("Ratio", classes="field-label")
                ratios = self._options["aspect"]
                yield Choice(
                    [(r, r) for r in ratios],
                    value="16:9" if "16:9" in ratios else ratios[0],
                    id="aspect",
                )
            with Vertical(classes="third", id="resolution-box"):
                yield Label("Resolution", classes="field-label")
                resolutions = self._options["resolution"]
                yield Choice(
                    [(r, r) for r in resolutions],
                    value=resolutions[0],
                    id="resolution",
                )
            with Vertical(classes="third", id="n-box"):
                yield Label("n (1-9)", classes="field-label")
                yield Input(value="1", id="n", type="integer", max_length=2, compact=True)
        # The fields of the other modes and of reference images: built when first needed.
        yield Deferred(self._omni_fields, id="omni-fields")
        yield Label("Reference image", classes="field-label", id="image-label")
        yield Input(
            placeholder="local .jpg/.png path or https:// URL", id="image", suggester=PathSuggester(), compact=True
        )
        yield Deferred(self._fidelity_fields, id="fidelity-fields")
        yield Deferred(self._multi_fields, id="multi-fields")
        yield Opener("▸ Advanced: external task id, callback URL", id="advanced-open", classes="opener")
        yield Deferred(self._advanced_fields, id="advanced-fields", on_demand=True)
        yield Opener("▸ Variants: prompt lines, models, ratios", id="variants-open", classes="opener")
        yield Deferred(self._variant_fields, id="variant-fields", on_demand=True)
        yield Static("", id="problems")
        yield Static("", id="estimate")
        yield Button("Submit  ctrl+j", id="submit", variant="primary", compact=True)

    def _advanced_fields(self) -> list[Widget]:
        return [
            Label("External task id (optional)", classes="field-label"),
            Input(placeholder="a fresh id is made when empty", id="external-id", compact=True),
            Label("Callback URL (optional)", classes="field-label"),
            Input(placeholder="https://…", id="callback", compact=True),
        ]

    @on(Opener.Opened, "#advanced-open")
    def open_advanced(self) -> None:
        self._build_advanced(focus=True)

    def _build_advanced(self, *, focus: bool = False) -> None:
        """Build the advanced fields (once), with any values held for them."""

        def ready() -> None:
            self.advanced_ready = True
            for widget_id in ADVANCED_FIELDS:
                self.query_one(f"#{widget_id}", Input).value = str(self._held.pop(widget_id, ""))
            self.validate_now()
            if focus:
                self.query_one("#external-id", Input).focus()

        self._open_group("advanced-fields", "advanced-open", ready)

    def _open_group(self, group_id: str, opener_id: str, ready: Callable[[], None]) -> None:
        """Build an on-demand group (once) in place of its opener; `ready` runs once it is mounted."""
        group = self.query_one(f"#{group_id}", Deferred)
        if group.built:
            return
        self.query_one(f"#{opener_id}").display = False
        mounting = group.build()

        async def mounted() -> None:
            await mounting
            if group.is_attached and group.children:  # else the app closed first
                ready()

        self.run_worker(mounted(), group=group_id)

    def _variant_fields(self) -> list[Widget]:
        return [
            Label("Variants (each combination is its own task)", classes="field-label"),
            Checkbox("One task per prompt line", id="split-lines"),
            Horizontal(
                Vertical(
                    Label("Also on models", classes="field-label"),
                    SelectionList[str](
                        *[(m, m) for m in self.caps.models_for("generations")], id="more-models", compact=True
                    ),
                    classes="half",
                ),
                Vertical(
                    Label("Also in ratios", classes="field-label"),
                    SelectionList[str](id="more-ratios", compact=True),
                    classes="half",
                ),
                classes="row",
                id="variant-lists",
            ),
        ]

    @on(Opener.Opened, "#variants-open")
    def open_variants(self) -> None:
        """Build the variant fields (once) in place of their one-line opener."""

        def ready() -> None:
            self.variants_ready = True
            self.refresh_capabilities()
            self.query_one("#split-lines", Checkbox).focus()

        self._open_group("variant-fields", "variants-open", ready)

    def _omni_fields(self) -> list[Widget]:
        return [
            Horizontal(
                Vertical(
                    Label("Result", classes="field-label"),
                    Choice([(o, o) for o in self._options["result-type"]], value="single", id="result-type"),
                    classes="half",
                ),
                Vertical(
                    Label(f"Series images ({SERIES_MIN}-{SERIES_MAX})", classes="field-label"),
                    Input(value="4", id="series-amount", type="integer", max_length=2, compact=True),
                    classes="half hidden",
                    id="series-box",
                ),
                classes="row omni-only hidden",
            ),
            Label("Reference images (N is <<<image_N>>>)", classes="field-label omni-only hidden"),
            ReferenceList(id="references", classes="omni-only hidden", compact=True),
            Static("a add a file or URL · t from history · d remove · K/J move", classes="hint omni-only hidden"),
            Label("Element ids (optional, <<<element_N>>>)", classes="field-label omni-only hidden"),
            Input(
                placeholder="ids of your Kling elements, comma-separated",
                id="elements",
                classes="omni-only hidden",
                compact=True,
            ),
        ]

    def _fidelity_fields(self) -> list[Widget]:
        return [
            Horizontal(
                Vertical(
                    Label("Reference", classes="field-label"),
                    Choice([(o, o) for o in self._options["reference"]], value=NO_REFERENCE, id="reference"),
                    classes="third hidden",
                    id="reference-box",
                ),
                Vertical(
                    Label("Image fidelity", classes="field-label"),
                    Input(placeholder="0.5", id="image-fidelity", type="number", compact=True),
                    classes="third",
                ),
                Vertical(
                    Label("Human fidelity", classes="field-label"),
                    Input(placeholder="0.45", id="human-fidelity", type="number", compact=True),
                    classes="third hidden",
                    id="human-fidelity-box",
                ),
                classes="row hidden",
                id="fidelity-row",
            )
        ]

    def _multi_fields(self) -> list[Widget]:
        fields: list[Widget] = []
        labels = [f"Subject image {i}" + ("" if i == 1 else " (optional)") for i in range(1, 5)]
        for label, field_id in (
            *zip(labels, SUBJECT_FIELDS),
            ("Scene image (optional)", "scene"),
            ("Style image (optional)", "style"),
        ):
            fields.append(Label(label, classes="field-label multi-only hidden"))
            fields.append(
                Input(
                    placeholder="path or https:// URL",
                    id=field_id,
                    classes="multi-only hidden",
                    suggester=PathSuggester(),
                    compact=True,
                )
            )
        return fields

    def build_deferred(self) -> None:
        """Start building the fields composed later (see compose). Until they are mounted,
        the values handed to them are held (`_held`) and read from there."""
        mounting = [group.build() for group in self.query(Deferred) if not group.built and not group.on_demand]
        if not mounting:
            return

        async def mounted() -> None:
            for waiting in mounting:
                await waiting
            if self.query(ReferenceList):  # else the app closed first: nothing was mounted
                self._fields_mounted()

        self.run_worker(mounted(), group="deferred-fields")

    def _fields_mounted(self) -> None:
        held = self._held
        # The advanced fields' values wait for their own group.
        self._held = {k: v for k, v in held.items() if k in ADVANCED_FIELDS and not self.advanced_ready}
        self.deferred_ready = True
        for widget in self.query(Input):
            if widget.id in held:
                widget.value = held[widget.id]
        self.query_one(ReferenceList).show(held.get("references", []))
        self._pending_selects.update({k: held[k] for k in ("reference", "result-type") if k in held})
        self.refresh_capabilities()
        self.validate_now()

    def _field(self, widget_id: str, kind: type[W]) -> W | None:
        """The widget, or None while it is one of the deferred fields not mounted yet."""
        if widget_id in DEFERRED_FIELDS and not self.deferred_ready:
            return None
        if widget_id in ADVANCED_FIELDS and not self.advanced_ready:
            return None
        # A query walks the whole form, and validation reads every field on each key.
        widget = self._fields.get(widget_id)
        if widget is None or not widget.is_attached:
            widget = next(self.query(f"#{widget_id}").results(kind), None)
            if widget is None:
                return None
            self._fields[widget_id] = widget
        return widget if isinstance(widget, kind) else None

    def on_mount(self) -> None:
        self.border_title = "New task"
        draft = dict(self._draft)
        if draft.get("model") in self.retired:
            draft.pop("model")  # the service said it is gone: start on the preferred model instead
        if draft:
            self.restore(draft)  # which shows the fields for the draft's mode and model
        else:
            self.refresh_capabilities()
        self._ready = True
        # Validation (and the estimate line) follows the first frame: it runs once the
        # deferred fields are in (_fields_mounted).
        self.call_after_refresh(self.build_deferred)

    # -- values ------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return str(self.query_one("#mode", Choice).value)

    @property
    def model(self) -> ModelCaps:
        name = str(self.query_one("#model", Choice).value)
        return self.caps.get(name) or self.caps.models[self.default_name]

    def _text(self, widget_id: str) -> str:
        widget = self._field(widget_id, Input)
        return (widget.value if widget is not None else str(self._held.get(widget_id, ""))).strip()

    def _choice(self, widget_id: str, default: str) -> str:
        """A Choice's value; one not built yet has its held value, else `default`."""
        widget = self._field(widget_id, Choice)
        return str(widget.value) if widget is not None else str(self._held.get(widget_id, default))

    def values(self) -> dict[str, Any]:
        """Every widget's raw value (the draft kept across restarts)."""
        values: dict[str, Any] = {
            "mode": self.mode,
            "model": str(self.query_one("#model", Choice).value),
            "prompt": self.query_one("#prompt", TextArea).text,
            "reference": self._choice("reference", NO_REFERENCE),
            "aspect": str(self.query_one("#aspect", Choice).value),
            "resolution": str(self.query_one("#resolution", Choice).value),
            "result-type": self._choice("result-type", "single"),
            # The draft keeps scalars only: the references go as JSON.
            "references": json.dumps(
                [[r.source, r.label, list(r.parent) if r.parent else None] for r in self.references]
            ),
        }
        values.update({k: v for k, v in self._held.items() if k != "references"})
        for widget in self.query(Input):
            if widget.id and self._field(widget.id, Input) is widget:
                values[widget.id] = widget.value
        table: TemplateValues | None = getattr(self, "_template_values", None)
        values[ZIP_KEY] = table.zipped if table is not None else self._draft.get(ZIP_KEY) is True
        return values

    def restore(self, values: dict[str, Any]) -> None:
        """Fill the form from a draft or a task's parameters (see `load_params`)."""
        if not values:
            return
        if values.get("mode") in ("generation", "multi", "omni"):
            self.query_one("#mode", Choice).value = values["mode"]
        if isinstance(values.get("prompt"), str):
            self._put_prompt(values["prompt"])
        # Set once the mode's options are in place (an Omni model is not among the generation models).
        self._pending_selects = {
            k: values[k] for k in ("model", "reference", "aspect", "resolution", "result-type") if k in values
        }
        for widget in self.query(Input):
            if widget.id in values and isinstance(values[widget.id], str):
                widget.value = values[widget.id]
        if not self.deferred_ready:
            fields = DEFERRED_FIELDS - {"references"}  # set just below
            self._held.update({k: v for k, v in values.items() if k in fields and isinstance(v, str)})
        if not self.advanced_ready:
            advanced = {k: v for k, v in values.items() if k in ADVANCED_FIELDS and isinstance(v, str)}
            self._held.update(advanced)
            if any(advanced.values()):
                self._build_advanced()  # a value that will be sent is a value on screen
        if isinstance(values.get("references"), str):
            self.set_references(_references_from_json(values["references"]))
        elif isinstance(values.get("references"), list):
            self.set_references(values["references"])
        self.refresh_capabilities()

    def load_params(self, kind: str, params: dict[str, Any], references: list[Reference] | None = None) -> None:
        """Put a recorded task's parameters into the form (an Omni task's images as `references`)."""
        from kling_tui.work.templates import escape

        values: dict[str, Any] = {
            "mode": kind if kind in ("multi", "omni") else "generation",
            "model": params.get("model_name") or self.caps.default_model,
            "prompt": escape(params.get("prompt") or ""),  # braces it was sent with stay literal
            "reference": params.get("image_reference") or NO_REFERENCE,
            "aspect": params.get("aspect_ratio") or "16:9",
            "resolution": params.get("resolution") or "1k",
            "n": str(params.get("n") or 1),
            "image-fidelity": "" if params.get("image_fidelity") is None else str(params["image_fidelity"]),
            "human-fidelity": "" if params.get("human_fidelity") is None else str(params["human_fidelity"]),
            "external-id": "",
        }
        for widget_id, field in TEXT_FIELDS.items():
            if field != "external_task_id":
                values[widget_id] = params.get(field) or ""
        subjects = list(params.get("subject_images") or [])
        for i, widget_id in enumerate(SUBJECT_FIELDS):
            values[widget_id] = subjects[i] if i < len(subjects) else ""
        if kind == "omni":
            values["aspect"] = params.get("aspect_ratio") or "auto"
            values["result-type"] = params.get("result_type") or "single"
            values["elements"] = ", ".join(str(e) for e in params.get("elements") or [])
            values["series-amount"] = str(params.get("series_amount") or 4)
            values["references"] = (
                references if references is not None else [Reference.of(i) for i in params.get("images") or []]
            )
        self.restore(values)
        self.validate_now()

    def _number(self, widget_id: str, field: str, cast: type, problems: list[Problem]) -> Any:
        text = self._text(widget_id)
        if not text:
            return None
        try:
            return cast(text)
        except ValueError:
            kind = "an integer" if cast is int else "a number"
            problems.append(Problem(field, f"must be {kind} (got {text!r})"))
            return None

    def build_request(self) -> tuple[FormRequest, list[Problem]]:
        """The request the form describes, and the problems of reading it (numbers)."""
        # The request types are not needed to draw the form: imported with its first check.
        from kling_tui.api.types import GenerationRequest, MultiImageRequest, OmniRequest

        problems: list[Problem] = []
        model = self.model
        n = self._number("n", "n", int, problems)
        prompt = self.query_one("#prompt", TextArea).text
        ratio = str(self.query_one("#aspect", Choice).value)
        common: dict[str, Any] = {
            "model_name": model.name,
            "n": n,
            "aspect_ratio": ratio,
            "external_task_id": self._text("external-id") or None,
            "callback_url": self._text("callback") or None,
        }
        if self.mode == "omni":
            series = self._choice("result-type", "single") == "series"
            omni = OmniRequest(
                prompt=prompt,
                images=[r.source for r in self.references],
                elements=[e.strip() for e in self._text("elements").split(",") if e.strip()],
                resolution=str(self.query_one("#resolution", Choice).value),
                result_type="series" if series else None,
                series_amount=self._number("series-amount", "series_amount", int, problems) if series else None,
                parents=parents_of(self.references),
                **{**common, "n": None if series else n},
            )
            if REMOVED_MARK in prompt:
                problems.append(
                    Problem("prompt", f"{REMOVED_MARK} stood for a removed image: type @ to pick another or delete it")
                )
            return omni, problems
        if self.mode == "multi":
            request: FormRequest = MultiImageRequest(
                subject_images=[self._text(f) for f in SUBJECT_FIELDS if self._text(f)],
                prompt=prompt or None,
                scene_image=self._text("scene") or None,
                style_image=self._text("style") or None,
                **common,
            )
            return request, problems
        image = self._text("image") or None
        reference = self._choice("reference", NO_REFERENCE)
        reference_value = reference if reference != NO_REFERENCE and model.reference_types else None
        resolution_box = self.query_one("#resolution-box")
        resolution = str(self.query_one("#resolution", Choice).value) if resolution_box.display else None
        request = GenerationRequest(
            prompt=prompt,
            negative_prompt=self._text("negative") or None,
            image=image,
            image_reference=reference_value,
            image_fidelity=self._number("image-fidelity", "image_fidelity", float, problems) if image else None,
            human_fidelity=(
                self._number("human-fidelity", "human_fidelity", float, problems)
                if reference_value == "subject"
                else None
            ),
            resolution=resolution,
            **common,
        )
        return request, problems

    def variant_requests(self, request: FormRequest | None = None) -> list[FormRequest]:
        """The form's request (built unless given) fanned out over the chosen variants (just
        itself when none)."""
        from kling_tui.work.variants import expand

        return expand(request or self.build_request()[0], self._fan_out())

    def _fan_out(self) -> FanOut:
        from kling_tui.work.variants import FanOut

        # The model and ratio lists are the generation endpoint's: hidden, and not used, in Omni mode.
        omni = self.mode == "omni"
        table: TemplateValues | None = getattr(self, "_template_values", None)
        shown = table if table is not None and table.display else None  # hidden: no template now
        if not self.variants_ready:  # not opened: no variants
            return FanOut(variables=shown.values() if shown else {}, zipped=bool(shown and shown.zipped))
        return FanOut(
            split_lines=self.query_one("#split-lines", Checkbox).value,
            models=[] if omni else list(self.query_one("#more-models", SelectionList).selected),
            ratios=[] if omni else list(self.query_one("#more-ratios", SelectionList).selected),
            variables=shown.values() if shown else {},
            zipped=bool(shown and shown.zipped),
        )

    # -- model awareness ---------------------------------------------------------------
    def _set_options(self, widget_id: str, options: tuple[str, ...], preferred: str | None = None) -> None:
        select = self._field(widget_id, Choice)
        if select is None:  # not built yet: it is composed with these options
            self._options[widget_id] = options
            if preferred in options:
                self._held[widget_id] = preferred
            return
        current = preferred or str(select.value)
        # Only when the model changed them: a change re-announces the value.
        if self._options.get(widget_id) != options:
            self._options[widget_id] = options
            select.set_options([(o, o) for o in options])
        value = current if current in options else options[0]
        if select.value != value:
            select.value = value

    def _hint(self, widget_id: str, text: str) -> None:
        hint = self._hints.get(widget_id)
        if hint is None:
            if not text:
                return
            hint = self._hints[widget_id] = self._mount_hint(widget_id)
        hint.update(Text(text))
        hint.display = bool(text)

    def _mount_hint(self, widget_id: str) -> Static:
        """The hint, mounted after its field and after the hints before it that follow the same field."""
        place = {hint_id: (anchor, classes) for hint_id, anchor, classes in HINTS}
        anchor, classes = place[widget_id]
        after: Widget = self.query_one(f"#{anchor}")
        for hint_id, other_anchor, _ in HINTS:
            if hint_id == widget_id:
                break
            if other_anchor == anchor and hint_id in self._hints:
                after = self._hints[hint_id]
        hint = Static("", id=widget_id, classes=classes)
        self.mount(hint, after=after)
        return hint

    def _show(self, shown: dict[str, bool]) -> None:
        """Hide or show the widgets by id ("#id") or class (".name"): one walk over the form,
        not a query each. A widget two keys name gets the later one's say."""
        for widget in self.walk_children():
            keys = (f"#{widget.id}", *(f".{name}" for name in widget.classes))
            for key in (key for key in shown if key in keys):
                widget.set_class(not shown[key], "hidden")

    def refresh_capabilities(self) -> None:
        """Show, hide and explain fields by what the chosen mode and model can do."""
        multi = self.mode == "multi"
        omni = self.mode == "omni"
        if multi or omni or self._text("image"):
            self.build_deferred()  # first: it hands over the values held for its Choices
        pending, self._pending_selects = self._pending_selects, {}
        if omni and getattr(self, "_last_mode", "omni") != "omni":
            pending.setdefault("aspect", "auto")  # Omni's default: the model follows the inputs
        self._last_mode = self.mode
        endpoint = OMNI_IMAGE if omni else "generations"
        names = (
            self.caps.multi_image_models()
            if multi
            else [m for m in self.caps.models_for(endpoint) if not self.caps.models[m].discontinued]
        )
        model_select = self.query_one("#model", Choice)
        current = pending.get("model") or str(model_select.value)
        if [o for o in names] != getattr(self, "_model_options", None):
            self._model_options = list(names)
            model_select.set_options([(n, n) for n in names])
        chosen = current if current in names else names[0]
        if model_select.value != chosen:
            model_select.value = chosen
        model = self.model
        image = "" if omni else self._text("image")
        single = not multi and not omni  # the generations endpoint

        shown: dict[str, bool] = {}  # by id or class: visible or not (see _show)
        shown[".multi-only"] = multi
        shown[".omni-only"] = omni
        shown["#variant-lists"] = not omni
        for widget_id in ("negative-label", "negative", "image-label", "image"):
            shown[f"#{widget_id}"] = single

        hints = []
        if omni:
            hints.append("Omni: edit, combine or restyle images; refer to image N as <<<image_N>>> (type @).")
        elif multi:
            hints.append(f"Multi-image to image: 1-4 subject images on {', '.join(self.caps.multi_image_models())}.")
        elif not model.text_to_image:
            hints.append(f"{model.name} has no text-to-image: give a reference image (restyle).")
        if model.restyle and single:
            hints.append("An image restyles it: the output keeps the input's size.")
        self._hint("model-hint", " ".join(hints))

        image_input = self.query_one("#image", Input)
        image_input.disabled = not model.accepts_image
        if not model.accepts_image:
            takers = [m.name for m in self.caps.models.values() if m.accepts_image]
            image_hint = f"{model.name} takes no reference image (models that do: {', '.join(takers)})."
        elif model.reference_types:
            image_hint = f"Needs a reference type on {model.name}: {', '.join(model.reference_types)}."
        else:
            image_hint = ""
        self._hint("image-hint", image_hint if single else "")

        negative = self.query_one("#negative", Input)
        negative.disabled = bool(image)
        self._hint("negative-hint", "Not available together with a reference image." if image and single else "")

        references = model.reference_types and single
        shown["#reference-box"] = bool(references)
        reference = pending.get("reference") or self._choice("reference", NO_REFERENCE)
        if references:
            self._set_options("reference", (NO_REFERENCE, *model.reference_types), reference)
            reference = self._choice("reference", NO_REFERENCE)
        show_image_fidelity = bool(image) and single
        show_human = show_image_fidelity and references and reference == "subject"
        shown["#fidelity-row"] = show_image_fidelity
        shown["#human-fidelity-box"] = bool(show_human)

        self._set_options("aspect", model.aspect_ratios, pending.get("aspect"))
        more_ratios = self.query_one("#more-ratios", SelectionList) if self.variants_ready else None
        if more_ratios is not None and more_ratios.option_count == 0:
            generation = [self.caps.models[m] for m in self.caps.models_for("generations")]
            every = list(dict.fromkeys(r for m in generation for r in m.aspect_ratios))
            more_ratios.add_options([(r, r) for r in every])
        resolutions = model.image_resolutions if image else model.resolutions
        restyle_input = bool(image) and model.restyle
        shown["#resolution-box"] = not multi and not restyle_input
        self._set_options("resolution", resolutions, pending.get("resolution"))
        result_types = ("single", "series") if model.series else ("single",)
        self._set_options("result-type", result_types, pending.get("result-type"))
        series = omni and self._choice("result-type", "single") == "series"
        shown["#series-box"] = series
        shown["#n-box"] = not series
        self._show(shown)
        self._shown_for = self._capability_inputs()

    def _capability_inputs(self) -> tuple[str, ...]:
        """What `refresh_capabilities` depends on: a change event that leaves these as they were
        (the Choices announcing their composed values on start, say) needs no second pass."""
        return (
            self.mode,
            str(self.query_one("#model", Choice).value),
            self._choice("reference", NO_REFERENCE),
            self._choice("result-type", "single"),
            self._text("image"),
        )

    # -- validation --------------------------------------------------------------------
    def validate_now(self) -> list[Problem]:
        from kling_tui.work.variants import check_fan_out, expand, fan_out_problems, variant_label

        request, problems = self.build_request()
        read_fields = {p.field for p in problems}
        problems += [p for p in request.problems(self.caps) if p.field not in read_fields]
        fan = self._fan_out()
        problems += fan_out_problems(request, fan)
        variants = expand(request, fan)
        if (len(variants) > 1 or variants[0].template) and not problems:
            # Each combination must stand on its own (e.g. 21:9 is not on every model).
            for number, p in check_fan_out(variants, self.caps):
                where = variant_label(number, variants[number - 1])
                problems.append(Problem(p.field, f"{p.rule} [{where}]", p.code))
        self.problems = problems
        self._show_problems(problems, request, variants)
        return problems

    def _show_problems(self, problems: list[Problem], request: FormRequest, variants: list[FormRequest]) -> None:
        # A field of no widget here is a template variable's: "{{animal}}" is shown by #var-animal.
        bad_widgets = {FIELD_WIDGET.get(f, "var-" + f.strip("{}")) for f in (p.field.split("[")[0] for p in problems)}
        for p in problems:
            if p.field.startswith("subject_image_list["):
                index = int(p.field.split("[")[1].split("]")[0])
                bad_widgets.add(SUBJECT_FIELDS[min(index, 3)])
        for widget in self.query(Input):
            widget.set_class(widget.id in bad_widgets, "-invalid")
        for listed in self.query(ReferenceList):
            listed.set_class("references" in bad_widgets, "-invalid")
        from kling_tui.api.types import OmniRequest

        # Allowed but probably not meant (an image the prompt never names): a hint, not a problem.
        warnings = request.warnings() if isinstance(request, OmniRequest) and not problems else []
        self._hint("omni-hint", "\n".join(warnings))
        text = Text()
        for p in problems:
            text.append("✗ ", style="bold")
            text.append(plain(f"{p.field}: {p.rule}") + "\n")
        self.query_one("#problems", Static).update(text)

        prompt = self.query_one("#prompt", TextArea).text
        count = self.query_one("#prompt-count", Label)
        count.update(f"{len(prompt)}/{PROMPT_MAX}")
        count.set_class(len(prompt) > PROMPT_MAX, "over")

        self._hint("model-warning", "\n".join(f"⚠ {plain(n)}" for n in self.retirement_notices(variants)))

        from kling_tui.api.prices import describe
        from kling_tui.work.variants import estimate_units

        model = self.model
        n = images_made(request.kind, request.params())
        units = estimate_units(variants, self.caps)
        if len(variants) > 1:
            images = sum(images_made(v.kind, v.params()) for v in variants)
            line = f"{len(variants)} tasks · {images} images · estimate ≈ {describe(units, self.caps)}"
        else:
            line = (
                f"{n} image{'s' if n != 1 else ''} on {model.name} · estimate ≈ {describe(units, self.caps)}"
                f" · holds {n} slot{'s' if n != 1 else ''}"
            )
        self.query_one("#estimate", Static).update(Text(line))

    def retirement_notices(self, variants: Sequence[GenerationRequest | MultiImageRequest | OmniRequest]) -> list[str]:
        """A warning per model about to be sent to that has retired or retires within 30 days."""
        today = self.today()
        names = dict.fromkeys(v.model_name for v in variants if v.model_name)
        notices = (self.caps.retirement_notice(name, today, self.retired) for name in names)
        return [n for n in notices if n]

    def mark_retired(self, name: str, since: dt.date) -> None:
        """The service said `name` is discontinued: warn about it from now on."""
        self.retired.setdefault(name, since)
        self.default_name = self.caps.preferred_model(self.today(), frozenset(self.retired))
        self.validate_now()

    def schedule_validation(self) -> None:
        if not self._ready:
            return
        if self._validate_timer is not None:
            self._validate_timer.stop()
        self._validate_timer = self.set_timer(0.15, self._validate_and_save)

    def _validate_and_save(self) -> None:
        self.validate_now()
        self.post_message(self.DraftChanged(self.values()))

    @on(Choice.Changed)
    def _select_changed(self, event: Choice.Changed) -> None:
        if (
            self._ready
            and event.choice.id in ("mode", "model", "reference", "result-type")
            and self._capability_inputs() != self._shown_for
        ):
            self.refresh_capabilities()
        self.schedule_validation()

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if self._ready and event.input.id == "image" and self._capability_inputs() != self._shown_for:
            self.refresh_capabilities()
        self.schedule_validation()

    @on(TextArea.Changed)
    @on(Checkbox.Changed)
    @on(SelectionList.SelectedChanged)
    def _prompt_changed(self) -> None:
        self._show_template_values()
        self.schedule_validation()

    def _show_template_values(self) -> None:
        """The values table, mounted below the prompt the first time it has a template."""
        text = self.query_one("#prompt", TextArea).text
        table: TemplateValues | None = getattr(self, "_template_values", None)
        if table is None and "{" not in text:
            return
        from kling_tui.work.templates import variables_in

        names, slots = variables_in(text)
        wanted = bool(names) or slots > 1  # the zip toggle matters from two slots on
        if table is None:
            if not wanted:
                return
            from kling_tui.ui.template_values import INPUT_PREFIX, TemplateValues

            kept = {k.removeprefix(INPUT_PREFIX): v for k, v in self._draft.items() if k.startswith(INPUT_PREFIX)}
            zipped = self._draft.get(ZIP_KEY) is True
            table = self._template_values = TemplateValues(names, kept=kept, zipped=zipped, id="template-values")
            self.mount(table, after="#prompt")
        table.show_variables(names)
        table.display = wanted

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self.post_message(self.SubmitRequested())

    @on(Input.Submitted)
    def _input_submitted(self) -> None:
        self.post_message(self.SubmitRequested())

    def use_template(self, body: str, values: Mapping[str, Sequence[str]], zipped: bool) -> None:
        """A saved template: its body into the prompt, its values into the values table."""
        self.set_prompt(body)
        self._show_template_values()
        table: TemplateValues | None = getattr(self, "_template_values", None)
        if table is not None:
            table.use(values, zipped)
        self.focus_prompt()

    def focus_prompt(self) -> None:
        self.query_one("#prompt", TextArea).focus()

    def set_prompt(self, text: str) -> None:
        self._put_prompt(text)
        self.validate_now()

    def _put_prompt(self, text: str) -> None:
        """Replace the prompt, the cursor after it: what one types next extends it."""
        area = self.query_one("#prompt", TextArea)
        area.text = text
        area.move_cursor(area.document.end)

    # -- Omni references ---------------------------------------------------------------
    @property
    def references(self) -> list[Reference]:
        listed = self._field("references", ReferenceList)
        return list(listed.references if listed is not None else self._held.get("references", []))

    def set_references(self, references: list[Reference], highlight: int | None = None) -> None:
        listed = self._field("references", ReferenceList)
        if listed is None:
            self._held["references"] = list(references)
        else:
            listed.show(references, highlight)
        self.schedule_validation()

    def use_omni(self) -> None:
        """Switch to Omni mode (its references and models)."""
        if self.mode != "omni":
            self.query_one("#mode", Choice).value = "omni"
            self.refresh_capabilities()

    def add_reference(self, reference: Reference) -> int:
        """Append an image to the references (switching to Omni mode); returns its number N."""
        self.use_omni()
        references = self.references + [reference]
        self.set_references(references, highlight=len(references) - 1)
        return len(references)

    def remove_reference(self, index: int) -> None:
        """Remove reference `index` (0-based); the prompt's <<<image_N>>> follow their images."""
        references = self.references
        if not 0 <= index < len(references):
            return
        del references[index]
        prompt = self.query_one("#prompt", TextArea)
        renumbered = after_removal(prompt.text, index + 1)
        if renumbered != prompt.text:
            prompt.text = renumbered
        self.set_references(references, highlight=index)

    def move_reference(self, index: int, delta: int) -> None:
        references = self.references
        other = index + delta
        if not (0 <= index < len(references) and 0 <= other < len(references)):
            return
        references[index], references[other] = references[other], references[index]
        prompt = self.query_one("#prompt", TextArea)
        swapped = after_swap(prompt.text, index + 1, other + 1)
        if swapped != prompt.text:
            prompt.text = swapped
        self.set_references(references, highlight=other)

    def start_edit(self, reference: Reference) -> None:
        """Omni with just this image as <<<image_1>>>, the prompt ready for the instruction."""
        self.use_omni()
        self.set_references([reference], highlight=0)
        self._set_options("aspect", self.model.aspect_ratios, "auto")
        self._set_options("result-type", self._options["result-type"], "single")
        self.query_one("#n", Input).value = "1"  # one edit to look at; n is one key away
        self.refresh_capabilities()
        prompt = self.query_one("#prompt", PromptArea)
        prompt.text = "<<<image_1>>> "
        prompt.move_cursor(prompt.document.end)
        prompt.focus()

    @on(ReferenceList.RemoveRequested)
    def _remove_requested(self, event: ReferenceList.RemoveRequested) -> None:
        self.remove_reference(event.index)

    @on(ReferenceList.MoveRequested)
    def _move_requested(self, event: ReferenceList.MoveRequested) -> None:
        self.move_reference(event.index, event.delta)

    @on(ReferenceList.AddRequested)
    def _add_requested(self, event: ReferenceList.AddRequested) -> None:
        if event.where == "history":
            return  # the app owns the history: it bubbles on to it
        event.stop()

        def chosen(value: str | None) -> None:
            if value:
                self.add_reference(Reference.of(value))

        self.app.push_screen(ReferenceInputDialog(PathSuggester()), chosen)

    @on(PromptArea.AtTyped)
    def _at_typed(self) -> None:
        references = self.references
        if self.mode != "omni" or not references:
            return
        prompt = self.query_one("#prompt", PromptArea)
        at = prompt.cursor_location
        offset = prompt.cursor_screen_offset

        def chosen(number: int | None) -> None:
            if number is None:
                return  # the @ stays as typed
            row, column = at
            start = (row, column - 1)
            if prompt.document.get_text_range(start, at) == "@":
                prompt.replace(f"<<<image_{number}>>>", start, at)
            else:
                prompt.insert(f"<<<image_{number}>>>")
            prompt.focus()

        self.app.push_screen(ReferenceCompletion(references, (offset.x, offset.y + 1)), chosen)


def _references_from_json(text: str) -> list[Reference]:
    """The draft's references; anything malformed is dropped (a draft is a convenience)."""
    try:
        items = json.loads(text)
    except ValueError:
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], str):
            parent = item[2]
            ok = isinstance(parent, list) and len(parent) == 2 and isinstance(parent[0], str)
            found.append(Reference(item[0], item[1], (parent[0], int(parent[1])) if ok else None))
    return found
