"""The kling-tui application: a form, a live task table and a preview, over the core."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from kling_tui.api.capabilities import Capabilities
from kling_tui.api.errors import InvalidRequest
from kling_tui.base.locations import history_dir
from kling_tui.base.textsafe import plain
from kling_tui.history.draft import load_draft, save_draft
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.ui.compare import CompareScreen
from kling_tui.ui.dialogs import ConfirmDialog, HelpScreen, SetupChoice, SetupScreen, TextDialog
from kling_tui.ui.form import GenerationForm, PromptArea
from kling_tui.ui.messages import BackgroundError, RecordChanged
from kling_tui.ui.pickers import PromptSearch, QuickPick
from kling_tui.ui.preview import PreviewPane
from kling_tui.ui.summary import SummaryScreen
from kling_tui.ui.tasks import ACTIVE, TaskTable

if TYPE_CHECKING:
    from kling_tui.api.auth import Auth
    from kling_tui.api.client import KlingClient
    from kling_tui.api.types import ResourcePack
    from kling_tui.work.workbench import Workbench

PAGE_SIZE = 200
PANES = ("form-pane", "tasks-pane", "preview-pane")  # the panes f2/f3/f4 focus
# Rows loaded before the first frame (a tall terminal's worth); the rest of the page follows it.
FIRST_PAINT_ROWS = 60
STATUS_FILTERS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("all", None),
    ("running", ACTIVE),
    ("succeed", ("succeed",)),
    ("failed", ("failed", "not_created", "error")),
)


class MainScreen(Screen):
    # on_mount focuses the prompt itself: auto-focus comes before the first layout and would
    # scroll the form. ("" turns it off; None would mean the app's default.)
    AUTO_FOCUS = ""


class KlingApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "kling-tui"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("ctrl+j,alt+enter", "submit", "Submit", priority=True, id="app.submit"),
        Binding("f2", "focus_form", "Form", id="app.focus_form"),
        Binding("f3", "focus_tasks", "Tasks", id="app.focus_tasks"),
        Binding("f4", "focus_preview", "Preview", id="app.focus_preview"),
        Binding("f1,question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+q", "quit", "Quit", priority=True, id="app.quit"),
        Binding("slash", "filter", "Filter", id="app.filter"),
        Binding("s", "cycle_status", "Status filter", show=False, id="app.status_filter"),
        Binding("o", "open_image", "Open", show=False, id="app.open_image"),
        Binding("y", "copy_url", "Copy URL", show=False, id="app.copy_url"),
        Binding("p", "copy_path", "Copy path", show=False, id="app.copy_path"),
        Binding("c", "copy_prompt", "Copy prompt", show=False, id="app.copy_prompt"),
        Binding("escape", "escape", "Leave the filter", show=False, id="app.escape"),
        Binding("e", "edit", "Edit in form", show=False, id="task.edit"),
        Binding("r", "rerun", "Re-run", show=False, id="task.rerun"),
        Binding("m", "duplicate('model')", "Same on model…", show=False, id="task.duplicate_model"),
        Binding("a", "duplicate('ratio')", "Same in ratio…", show=False, id="task.duplicate_ratio"),
        Binding("f", "star", "Star", show=False, id="task.star"),
        Binding("n", "note", "Note", show=False, id="task.note"),
        Binding("F", "starred_only", "Starred only", show=False, id="app.starred_filter"),
        Binding("v", "compare", "Compare", show=False, id="task.compare"),
        Binding("X", "cancel_queued", "Cancel queued", show=False, id="task.cancel"),
        Binding("K", "move_queued(-1)", "Queue earlier", show=False, id="task.queue_up"),
        Binding("J", "move_queued(1)", "Queue later", show=False, id="task.queue_down"),
        Binding("u", "summary", "Units", show=False, id="app.summary"),
    ]
    # Single-letter keys act on tasks only while no text field has focus.
    TEXT_SAFE_ACTIONS = frozenset(
        {
            "cycle_status",
            "open_image",
            "copy_url",
            "copy_path",
            "copy_prompt",
            "filter",
            "edit",
            "rerun",
            "duplicate",
            "star",
            "note",
            "starred_only",
            "compare",
            "cancel_queued",
            "move_queued",
            "summary",
        }
    )

    def __init__(
        self,
        settings: Any,
        *,
        sandbox: Any = None,
        store: HistoryStore | None = None,
        image_protocol: str = "auto",
        clock: Callable[[], float] = time.time,
        poll_interval: float | None = None,
        start_poller: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.sandbox = sandbox
        self.clock = clock
        self.image_protocol = image_protocol
        self.poll_interval = (
            poll_interval if poll_interval is not None else float(getattr(settings, "poll_interval", 1.0) or 1.0)
        )
        self.start_poller = start_poller
        self.caps: Capabilities = settings.capabilities()
        self.store = store or HistoryStore(history_dir(sandbox=sandbox is not None))
        self.workbench: Workbench | None = None  # set by connect()
        self._client: KlingClient | None = None
        self.status_filter = 0
        self.starred_only = False
        self._compare_mark: str | None = None
        self.packs: list[ResourcePack] | None = (
            None  # resource packs from /account/costs, refreshed at most once a minute
        )
        self._packs_at: float | None = None  # when they were fetched
        # Units of tasks finished since then, by local id: the header counts them off at once.
        self._spent_since_packs: dict[str, float] = {}
        self._total = 0
        self.text_filter = ""
        self._draft_timer = None
        self._draft = load_draft()
        theme = self._draft.get("_theme") or getattr(settings, "theme", None)
        if theme in self.available_themes:
            self.theme = theme
        keymap = getattr(settings, "keymap", None)
        if keymap:
            self.set_keymap(dict(keymap))

    # -- layout ------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        # The prompt, its first focusable widget, has the focus from the start: the pane starts active.
        yield GenerationForm(self.caps, draft=self._draft, id="form-pane", classes="-active")
        with Vertical(id="right"):
            with Vertical(id="tasks-pane"):
                with Horizontal(id="filter-bar"):
                    yield Input(placeholder="filter by prompt, model or task id", id="filter")
                    yield Static("", id="status-filter")
                yield TaskTable(clock=self.clock, id="tasks")
            yield PreviewPane(self.image_protocol, id="preview-pane")
        yield Footer()

    # The main screen's panes, found once: dialogs on top must not hide them from handlers.
    @property
    def form(self) -> GenerationForm:
        return self._main("form-pane", GenerationForm)

    @property
    def table(self) -> TaskTable:
        return self._main("tasks", TaskTable)

    @property
    def preview(self) -> PreviewPane:
        return self._main("preview-pane", PreviewPane)

    def _main(self, widget_id: str, kind: type):
        cache = self.__dict__.setdefault("_panes", {})
        if widget_id not in cache:
            cache[widget_id] = self.screen_stack[0].query_one(f"#{widget_id}", kind)
        return cache[widget_id]

    def on_load(self) -> None:
        # Building the screen allocates a lot; full collections then cost ~100 ms of the
        # start. Collect again after the first frame, with the start-up objects frozen.
        gc.disable()

    def _first_frame_painted(self) -> None:
        gc.freeze()
        gc.enable()
        if self.table.row_count < PAGE_SIZE:
            self._load_more(PAGE_SIZE - self.table.row_count)

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_frame_painted)
        self.screen_stack[0].query_one("#tasks-pane").border_title = "Tasks"
        for message in self.settings.warnings:
            self.notify(plain(message), title="Config", severity="warning", timeout=10, markup=False)
        self._warned = 0
        self._flush_store_warnings()
        self.reload_table(FIRST_PAINT_ROWS)
        self.set_interval(1.0, self.table.tick)
        if self.sandbox is not None or self.settings.has_credentials:
            # After the first frame: importing httpx, building its SSL context and the
            # reconcile pass are not needed to draw the window.
            self.call_after_refresh(self.ensure_connected)
        else:
            self.push_screen(SetupScreen(), self._setup_done)
        self.form.query_one(PromptArea).past_prompts = self.store.prompts(500)
        self.form.focus_prompt()

    # -- connection --------------------------------------------------------------------
    @property
    def endpoint_label(self) -> str:
        if self.sandbox is not None:
            return "sandbox"
        from urllib.parse import urlsplit

        from kling_tui.config import REGIONS

        region = getattr(self.settings, "region", None)
        base_url = self.settings.base_url
        # The region's name only while requests go there: KLING_BASE_URL or base_url win over it.
        if region in REGIONS and base_url.rstrip("/") == REGIONS[region]:
            return region.capitalize()
        try:
            parts = urlsplit(base_url)
            host = parts.hostname or base_url  # never the user:password part of a URL
            if parts.port is not None:
                host = f"{host}:{parts.port}"
        except ValueError:
            host = base_url
        return plain(host)

    def ensure_connected(self) -> bool:
        """Connect now unless connected already or there is nothing to connect with."""
        if self.workbench is None and (self.sandbox is not None or self.settings.has_credentials):
            self.connect()
        return self.workbench is not None

    def connect(self) -> None:
        """Build the client and start following tasks."""
        from kling_tui.api.auth import ApiKeyAuth, auth_from
        from kling_tui.api.client import KlingClient
        from kling_tui.work.tracker import Tracker
        from kling_tui.work.workbench import Workbench

        if self.sandbox is not None:
            from kling_tui.sandbox import DEFAULT_API_KEY

            auth: Auth = ApiKeyAuth(DEFAULT_API_KEY)
            base_url = self.sandbox.base_url
        else:
            from kling_tui.api.auth import Credentials

            credentials = Credentials(self.settings.access_key, self.settings.secret_key, self.settings.api_key)
            base_url, auth = self.settings.base_url, auth_from(credentials)
        self._client = KlingClient(base_url, auth, caps=self.caps)
        # Polls every interval while tasks run; backs off while the service fails (at most 5 s,
        # or twice the interval when that is short, as on the sandbox).
        slowest = 5.0 if self.poll_interval >= 1.0 else self.poll_interval * 2
        tracker = Tracker(self._client, min_interval=self.poll_interval, max_interval=slowest)
        from kling_tui.work.budget import SlotBudget

        budget = SlotBudget(int(self.settings.concurrency or 9))
        self.workbench = Workbench(self._client, self.store, self.caps, tracker=tracker, budget=budget)
        self.workbench.subscribe(lambda record: self.post_message(RecordChanged(record)))
        self.update_header()
        # The client's imports are here for good: keep full collections from walking them.
        gc.freeze()
        if self.start_poller:
            self.follow()
            self.refresh_costs()
            self.set_interval(60, self.refresh_costs)
        self.reconcile()

    def _setup_done(self, choice: SetupChoice | None) -> None:
        if choice is None:
            self.exit()
            return
        from kling_tui.config import save_settings

        if choice.mode == "sandbox":
            self.settings.sandbox = True
            self._use_store(HistoryStore(history_dir(sandbox=True)))
            self._start_sandbox()
        else:
            if choice.mode == "aksk":
                self.settings.access_key, self.settings.secret_key = choice.access_key, choice.secret_key
            else:
                self.settings.api_key = choice.api_key
            self.settings.region = choice.region
            if choice.region == "custom":
                self.settings.custom_base_url = choice.base_url
        try:
            save_settings(self.settings)
        except OSError as exc:
            self.notify(f"Could not save the config: {exc}", severity="error", markup=False)
        if choice.mode != "sandbox":
            self.connect()

    def _use_store(self, store: HistoryStore) -> None:
        """Switch histories before connecting (the sandbox keeps its own)."""
        self.store.close()
        self.store = store
        self._warned = 0
        self._flush_store_warnings()
        self.reload_table()
        self.form.query_one(PromptArea).past_prompts = self.store.prompts(500)

    @work(thread=True, group="sandbox")
    def _start_sandbox(self) -> None:
        from kling_tui.sandbox import Sandbox, SandboxConfig

        sandbox = Sandbox(SandboxConfig())
        sandbox.start()
        self.sandbox = sandbox
        self.call_from_thread(self.connect)

    @work(group="poller", exclusive=True)
    async def follow(self) -> None:
        assert self.workbench is not None
        await self.workbench.follow(on_error=lambda exc: self.post_message(BackgroundError(exc, "polling")))

    @work(group="reconcile", exclusive=True)
    async def reconcile(self) -> None:
        assert self.workbench is not None
        await self.workbench.reconcile()

    async def on_unmount(self) -> None:
        gc.enable()  # closed before the first frame
        if self.workbench is not None:
            await self.workbench.aclose()
        if self._client is not None:
            await self._client.aclose()

    def update_header(self) -> None:
        if self.workbench is None:
            self.sub_title = self.endpoint_label
            return
        used, budget = self.workbench.slots_in_use, self.workbench.budget
        slots = f"slots {used}/{budget.budget}" + (f" (of {budget.limit})" if budget.budget < budget.limit else "")
        queued = f" · {len(self.workbench.queue)} queued" if self.workbench.queue else ""
        units = ""
        if self.packs:
            left = sum(p.remaining for p in self.packs if p.status == "online")
            left = max(0.0, left - sum(self._spent_since_packs.values()))
            units = f" · {left:g} units left"
        self.sub_title = f"{self.endpoint_label} · {slots}{queued}{units}"

    # -- records -----------------------------------------------------------------------
    def reload_table(self, limit: int = PAGE_SIZE) -> None:
        label, _statuses = STATUS_FILTERS[self.status_filter]
        rows = self.store.recent(limit, **self._table_filters())
        self.table.load(rows)
        self._total = self.store.count(**self._table_filters())
        self._set_tasks_title(self._total)
        star = " · ★ only" if self.starred_only else ""
        self.screen_stack[0].query_one("#status-filter", Static).update(Text(f"status: {label}{star}"))
        self.show_selected()

    def _set_tasks_title(self, total: int) -> None:
        shown = self.table.row_count
        more = f" · showing {shown}" if shown < total else ""
        self.screen_stack[0].query_one("#tasks-pane").border_title = f"Tasks ({total}{more})"

    def _table_filters(self) -> dict[str, Any]:
        _, statuses = STATUS_FILTERS[self.status_filter]
        return {"text": self.text_filter or None, "status": statuses, "starred": True if self.starred_only else None}

    def _matches_filter(self, record: TaskRecord) -> bool:
        if self.starred_only and not record.starred:
            return False
        _, statuses = STATUS_FILTERS[self.status_filter]
        if statuses and record.status not in statuses:
            return False
        if self.text_filter:
            needle = self.text_filter.lower()
            haystack = " ".join([record.prompt or "", record.model or "", record.task_id or ""]).lower()
            return needle in haystack
        return True

    @on(RecordChanged)
    def _record_changed(self, message: RecordChanged) -> None:
        record = message.record
        previous = self.table.row_data(record.local_id)
        self._count_spent(record)
        if record.status == "not_created" and (previous is None or previous.status != "not_created"):
            self.notify(plain(record.status_msg), title="Not created", severity="error", markup=False)
        if not self.table.known(record.local_id) and self._matches_filter(record):
            self.table.upsert(record)
            self._total += 1
            self._set_tasks_title(self._total)
        elif self.table.known(record.local_id):
            self.table.upsert(record)
        self.update_header()
        if self.table.selected_key == record.local_id:
            self.show_selected(record)

    def _count_spent(self, record: TaskRecord) -> None:
        if self._packs_at is None or not record.finished_at or record.finished_at < self._packs_at:
            return
        try:
            self._spent_since_packs[record.local_id] = float(record.units or 0)
        except ValueError:  # a unit count the server wrote oddly: leave it to the next fetch
            pass

    @on(BackgroundError)
    def _background_error(self, message: BackgroundError) -> None:
        self.notify(plain(message.error), title=f"Error while {message.where}", severity="error", markup=False)

    def _flush_store_warnings(self) -> None:
        """Tell the user about history files the store had to set aside."""
        for message in self.store.warnings[self._warned :]:
            self.notify(plain(message), title="History", severity="warning", timeout=10, markup=False)
        self._warned = len(self.store.warnings)

    def selected_record(self) -> TaskRecord | None:
        key = self.table.selected_key
        record = self.store.get(key) if key else None
        self._flush_store_warnings()
        return record

    def show_selected(self, record: TaskRecord | None = None) -> None:
        record = record or self.selected_record()
        if record is None:
            self.preview.show_task(None, [], [], "")
            return
        folder = self.store.task_dir(record.local_id)
        paths: list[Path | None] = [folder / p for p in record.image_paths]
        note = ""
        if record.status in ("failed", "not_created", "error"):
            note = f"{record.status.replace('_', ' ')}: {record.status_msg}"
        self.preview.show_task(record.local_id, paths, list(record.image_urls), record.status, note)

    @on(events.DescendantFocus)
    def _mark_active_pane(self, event: events.DescendantFocus) -> None:
        # A class on the pane that holds the focus, instead of :focus-within, which restyles a
        # whole pane (the form: ~90 widgets) on every move of the focus inside it.
        owner = next((w.id for w in event.widget.ancestors_with_self if w.id in PANES), None)
        if owner is None:
            return
        for pane_id in PANES:
            self.screen_stack[0].query_one(f"#{pane_id}").set_class(pane_id == owner, "-active")

    @on(DataTable.RowHighlighted, "#tasks")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_selected()
        if event.cursor_row >= self.table.row_count - 1:
            self._load_more()

    def _load_more(self, limit: int = PAGE_SIZE) -> None:
        rows = self.store.recent(limit, offset=self.table.row_count, **self._table_filters())
        if rows:
            self.table.append(rows)
            self._set_tasks_title(self.store.count(**self._table_filters()))

    @on(DataTable.RowSelected, "#tasks")
    def _row_selected(self) -> None:
        self.preview.focus()

    # -- submitting --------------------------------------------------------------------
    def action_submit(self) -> None:
        if not self.ensure_connected():
            self.notify("Not connected yet.", severity="warning")
            return
        problems = self.form.validate_now()
        if problems:
            self.notify(
                plain("\n".join(str(p) for p in problems), keep_newlines=True),
                title="Not sent",
                severity="error",
                markup=False,
            )
            return
        requests = self.form.variant_requests()
        if len(requests) > 1:
            from kling_tui.work.variants import estimate_units

            units = estimate_units(requests, self.caps)
            self.push_screen(
                ConfirmDialog(f"Submit {len(requests)} tasks, about {units:g} units?", yes="Submit"),
                lambda yes: self._enqueue(requests) if yes else None,
            )
            return
        self._enqueue(requests)

    def _enqueue(self, requests: list[Any]) -> None:
        from kling_tui.work.variants import new_group

        assert self.workbench is not None
        group = new_group() if len(requests) > 1 else None
        for request in requests:
            try:
                record = self.workbench.enqueue(request, group=group)
            except InvalidRequest as exc:
                self.notify(str(exc), title="Not sent", severity="error", markup=False)
                return
            except OSError as exc:
                self.notify(f"Could not write history: {exc}", severity="error", markup=False)
                return
            self._show_new(record)
        self.form.query_one(PromptArea).remember(self.form.query_one(PromptArea).text)
        self.update_header()

    def _show_new(self, record: TaskRecord) -> None:
        """Put a just-recorded task on top of the table and select it."""
        if not self.table.known(record.local_id):
            self.table.upsert(record)
            self._total += 1
            self._set_tasks_title(self._total)
        self.table.move_cursor(row=self.table.get_row_index(record.local_id), animate=False)

    @on(GenerationForm.SubmitRequested)
    def _form_submit(self) -> None:
        self.action_submit()

    @on(GenerationForm.DraftChanged)
    def _draft_changed(self, message: GenerationForm.DraftChanged) -> None:
        self._save_draft(message.values)

    # -- actions -----------------------------------------------------------------------
    def action_focus_form(self) -> None:
        self.form.focus_prompt()

    def action_focus_tasks(self) -> None:
        self.table.focus()

    def action_focus_preview(self) -> None:
        self.preview.focus()

    def action_filter(self) -> None:
        bar = self.screen_stack[0].query_one("#filter-bar")
        bar.add_class("visible")
        self.screen_stack[0].query_one("#filter", Input).focus()

    def action_escape(self) -> None:
        if self.focused is self.screen_stack[0].query_one("#filter", Input):
            self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value.strip()
        self.reload_table()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    def action_cycle_status(self) -> None:
        self.status_filter = (self.status_filter + 1) % len(STATUS_FILTERS)
        self.screen_stack[0].query_one("#filter-bar").add_class("visible")
        self.reload_table()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_sections()))

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Every binding with the key it has now (keymap overrides included)."""
        keys: dict[tuple[str, str], list[str]] = {}
        current = self._bindings.copy()
        if self._keymap:
            current.apply_keymap(self._keymap)
        for bindings in current.key_to_bindings.values():
            for binding in bindings:
                group = (binding.id or "").split(".")[0]
                if group in ("app", "task") and binding.description:
                    keys.setdefault((group, binding.description), []).append(self.get_key_display(binding))
        groups: dict[str, list[tuple[str, str]]] = {"app": [], "task": []}
        for (group, description), shown in sorted(keys.items(), key=lambda item: item[0][1]):
            groups[group].append((" / ".join(shown), description))
        return [
            ("Everywhere", groups["app"] + [("ctrl+p", "Command palette")]),
            (
                "On the selected task",
                groups["task"] + [("j / k", "Down / up"), ("g / G", "First / last"), ("enter", "Preview it")],
            ),
            ("Preview", [("left / right (h / l)", "Previous / next image")]),
            (
                "Form",
                [
                    ("tab / shift+tab", "Next / previous field"),
                    ("up / down in the prompt", "Past prompts, like a shell"),
                    ("ctrl+r in the prompt", "Search past prompts"),
                ],
            ),
        ]

    def _notify_copied(self, what: str) -> None:
        self.notify(f"Copied the {what} (OSC 52).", timeout=3)

    def action_copy_url(self) -> None:
        url = self.preview.current_url
        if url:
            self.copy_to_clipboard(url)
            self._notify_copied("image URL")

    def action_copy_path(self) -> None:
        path = self.preview.current_path
        if path:
            self.copy_to_clipboard(str(path))
            self._notify_copied("image path")

    def action_copy_prompt(self) -> None:
        record = self.selected_record()
        if record and record.prompt:
            self.copy_to_clipboard(record.prompt)
            self._notify_copied("prompt")

    def action_open_image(self) -> None:
        from kling_tui.base.opener import open_in_viewer

        path = self.preview.current_path
        if path is None:
            self.notify("No saved image to open.", severity="warning")
            return
        error = open_in_viewer(path)
        if error:
            self.notify(error, severity="warning", markup=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.TEXT_SAFE_ACTIONS:
            return not isinstance(self.focused, (Input,)) and not self._text_area_focused()
        return True

    def _text_area_focused(self) -> bool:
        from textual.widgets import TextArea

        return isinstance(self.focused, TextArea)

    # -- iterating on tasks ------------------------------------------------------------
    def _selected_or_warn(self) -> TaskRecord | None:
        record = self.selected_record()
        if record is None:
            self.notify("Select a task first (f3 jumps to the table).", severity="warning")
        return record

    def action_edit(self) -> None:
        record = self._selected_or_warn()
        if record:
            self.form.load_params(record.kind, record.params)
            self.form.focus_prompt()
            self.notify("Loaded into the form.", timeout=2)

    def _resubmit(self, record: TaskRecord, **changes: Any) -> None:
        from kling_tui.api.types import request_from_params

        if not self.ensure_connected():
            self.notify("Not connected yet.", severity="warning")
            return
        params = {**record.params, **changes}
        params.pop("external_task_id", None)  # a fresh id: this is a new task
        request = request_from_params(record.kind, params)
        self._enqueue([request])

    def action_rerun(self) -> None:
        record = self._selected_or_warn()
        if record:
            self._resubmit(record)

    def action_duplicate(self, what: str) -> None:
        record = self._selected_or_warn()
        if record is None:
            return
        if what == "model":
            options = (
                self.caps.multi_image_models()
                if record.kind == "multi"
                else [m.name for m in self.caps.models.values() if not m.discontinued and m.name != record.model]
            )
            title, field = "Same task on model…", "model_name"
        else:
            model = self.caps.get(record.model or self.caps.default_model)
            options = [r for r in (model.aspect_ratios if model else ()) if r != record.aspect_ratio]
            title, field = "Same task in aspect ratio…", "aspect_ratio"
        self.push_screen(
            QuickPick(title, options),
            lambda choice: self._resubmit(record, **{field: choice}) if choice else None,
        )

    def action_star(self) -> None:
        record = self._selected_or_warn()
        if record and self.workbench:
            self.workbench.annotate(record.local_id, starred=not record.starred)

    def action_note(self) -> None:
        record = self._selected_or_warn()
        if record is None or self.workbench is None:
            return

        def save(note: str | None) -> None:
            if note is not None and self.workbench:
                self.workbench.annotate(record.local_id, note=note)
                self.show_selected()

        self.push_screen(TextDialog("Note for this task", record.note, "anything you want to remember"), save)

    def action_starred_only(self) -> None:
        self.starred_only = not self.starred_only
        self.screen_stack[0].query_one("#filter-bar").add_class("visible")
        self.reload_table()

    def action_compare(self) -> None:
        record = self._selected_or_warn()
        if record is None:
            return
        if self._compare_mark is None or self._compare_mark == record.local_id:
            self._compare_mark = record.local_id
            self.notify("Marked as A. Press v on another task to compare.", timeout=3)
            return
        left = self.store.get(self._compare_mark)
        self._compare_mark = None
        if left is None:
            return
        self.push_screen(
            CompareScreen(
                left,
                record,
                self.store.task_dir(left.local_id),
                self.store.task_dir(record.local_id),
                self.image_protocol,
            )
        )

    def action_cancel_queued(self) -> None:
        record = self._selected_or_warn()
        if record and self.workbench and self.workbench.cancel(record.local_id) is None:
            self.notify("Only queued tasks can be cancelled (Kling has no cancel).", severity="warning")
        self.update_header()

    def action_move_queued(self, delta: int) -> None:
        record = self._selected_or_warn()
        if record and self.workbench and not self.workbench.move(record.local_id, delta):
            self.notify("Only queued tasks can be moved.", severity="warning")

    @work(group="summary", exclusive=True)
    async def action_summary(self) -> None:
        import asyncio

        totals = await asyncio.to_thread(self.store.unit_totals)
        # Asked for by the user: fetch what is left now (the header's own refresh is once a minute).
        await self.refresh_costs().wait()
        self.push_screen(SummaryScreen(totals, self.packs))

    @work(group="costs", exclusive=True)
    async def refresh_costs(self) -> None:
        """Remaining units for the header; the endpoint allows 1 request a second, we use 1 a minute."""
        if self._client is None:
            return
        try:
            fetched_at = time.time()
            self.packs = await self._client.account_costs()
            self._packs_at = fetched_at
            self._spent_since_packs.clear()
        except Exception as exc:  # the header simply shows nothing
            self.log.warning(f"account costs: {exc}")
            return
        self.update_header()

    @on(PromptArea.SearchRequested)
    def _search_prompts(self) -> None:
        prompts = self.store.prompts(2000)

        def chosen(prompt: str | None) -> None:
            if prompt is not None:
                self.form.set_prompt(prompt)

        self.push_screen(PromptSearch(prompts), chosen)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Submit", "Send the form's request", self.action_submit)
        yield SystemCommand("Focus form", "Jump to the prompt", self.action_focus_form)
        yield SystemCommand("Focus tasks", "Jump to the task table", self.action_focus_tasks)
        yield SystemCommand("Focus preview", "Jump to the image preview", self.action_focus_preview)
        yield SystemCommand("Filter tasks", "Filter the table by text", self.action_filter)
        yield SystemCommand("Cycle status filter", "all / running / succeed / failed", self.action_cycle_status)
        if self.preview.current_path:
            yield SystemCommand("Open image", "In the system viewer", self.action_open_image)
            yield SystemCommand("Copy image path", "To the clipboard (OSC 52)", self.action_copy_path)
        if self.preview.current_url:
            yield SystemCommand("Copy image URL", "To the clipboard (OSC 52)", self.action_copy_url)
        record = self.selected_record()
        if record is not None:
            yield SystemCommand("Copy prompt", "Of the selected task", self.action_copy_prompt)
            yield SystemCommand("Edit task in form", "Load its parameters into the form", self.action_edit)
            verb = "Retry task" if record.status in ("failed", "not_created", "error") else "Re-run task"
            yield SystemCommand(verb, "Send it again as it was", self.action_rerun)
            yield SystemCommand("Same task on another model", "Pick the model", partial(self.action_duplicate, "model"))
            yield SystemCommand(
                "Same task in another ratio", "Pick the aspect ratio", partial(self.action_duplicate, "ratio")
            )
            yield SystemCommand("Unstar task" if record.starred else "Star task", "Toggle the star", self.action_star)
            yield SystemCommand("Note on task", "Add or edit a note", self.action_note)
            yield SystemCommand("Compare with…", "Mark this task, then another", self.action_compare)
            if record.status == "queued":
                yield SystemCommand("Cancel queued task", "It was not sent yet", self.action_cancel_queued)
        yield SystemCommand("Starred only", "Toggle the star filter", self.action_starred_only)
        yield SystemCommand("Units summary", "Per day and per model", self.action_summary)
        yield SystemCommand("Keys", "Every key of the app", self.action_help)

    def watch_theme(self, theme: str) -> None:
        if self.is_running:
            self._save_draft()

    def _save_draft(self, values: dict[str, Any] | None = None) -> None:
        values = dict(values or self.form.values())
        values["_theme"] = self.theme
        try:
            save_draft(values)
        except OSError:
            pass  # the draft is a convenience; history is written elsewhere

    async def action_quit(self) -> None:
        sending = self.workbench.sending if self.workbench else 0
        if sending:
            self.push_screen(
                ConfirmDialog(
                    f"{sending} create request(s) are on their way. They are recorded and will be "
                    "looked up on the next start. Quit now?",
                    yes="Quit",
                ),
                self._quit_answer,
            )
            return
        self._save_draft()
        self.exit()

    def _quit_answer(self, quit_now: bool | None) -> None:
        if quit_now:
            self._save_draft()
            self.exit()


def make_app(settings: Any = None, **kwargs: Any) -> KlingApp:
    """The one way the CLI, the tests and the screenshot script build the app."""
    if settings is None:
        from kling_tui.config import load_settings

        settings = load_settings()
    return KlingApp(settings, **kwargs)
