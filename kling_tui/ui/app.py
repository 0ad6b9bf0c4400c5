"""The kling-tui application: a form, a live task table and a preview, over the core."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.actions import SkipAction
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.style import Style
from textual.widgets import DataTable, Footer, Header, Input, Static

from kling_tui.api.capabilities import Capabilities, discontinued_model
from kling_tui.api.errors import InvalidRequest
from kling_tui.base.locations import StorageError, cache_dir, history_dir
from kling_tui.base.textsafe import plain
from kling_tui.history.draft import load_draft, save_draft
from kling_tui.history.index import matches_words, record_texts, search_terms
from kling_tui.history.retired import load_retired, remember_retired
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.ui.css_cache import FILE_NAME as CSS_CACHE
from kling_tui.ui.css_cache import CachedStylesheet
from kling_tui.ui.form import SUBJECT_FIELDS, GenerationForm, PromptArea
from kling_tui.ui.messages import BackgroundError, RecordChanged
from kling_tui.ui.preview import PreviewPane
from kling_tui.ui.references import Reference, ReferenceList, short
from kling_tui.ui.tasks import ACTIVE, TaskTable, highlighter

if TYPE_CHECKING:
    from textual.dom import DOMNode

    from kling_tui.api.auth import Auth
    from kling_tui.api.client import KlingClient
    from kling_tui.api.types import ResourcePack
    from kling_tui.ui.dialogs import SetupChoice
    from kling_tui.work.workbench import Workbench

DIM = Style(dim=True)
PAGE_SIZE = 200
PANES = ("form-pane", "tasks-pane", "preview-pane")  # the panes f2/f3/f4 focus
# Below this width three panes cannot each be useful: the form and the tasks take turns (f6).
NARROW_WIDTH = 100
STATUS_FILTERS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("all", None),
    ("running", ACTIVE),
    ("succeed", ("succeed",)),
    ("failed", ("failed", "not_created", "error")),
)


def _css_cache_file() -> Path | None:
    try:
        return cache_dir() / CSS_CACHE
    except StorageError:  # no cache folder: parse the CSS at each start, as Textual does
        return None


class MainScreen(Screen):
    # on_mount focuses the prompt itself: auto-focus comes before the first layout and would
    # scroll the form. ("" turns it off; None would mean the app's default.)
    AUTO_FOCUS = ""
    _shown = False

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        # Runs before Textual's own handler. The first time, every widget was styled as it
        # mounted a moment ago: styling the whole screen again would cost ~15 ms of the first
        # frame and change nothing. Later (back from a dialog) the usual refresh applies.
        if not self._shown:
            self._shown = True
            event.refresh_styles = False


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
        Binding("ctrl+t", "templates", "Templates", id="app.templates"),
        Binding("ctrl+b", "save_template", "Save prompt as template", show=False, id="app.save_template"),
        Binding("s", "cycle_status", "Status filter", show=False, id="app.status_filter"),
        Binding("o", "open_image", "Open", show=False, id="app.open_image"),
        Binding("y", "copy_url", "Copy URL", show=False, id="app.copy_url"),
        Binding("p", "copy_path", "Copy path", show=False, id="app.copy_path"),
        Binding("c", "copy_prompt", "Copy prompt", show=False, id="app.copy_prompt"),
        Binding("escape", "escape", "Leave the filter", show=False, id="app.escape"),
        Binding("e", "edit", "Edit in form", show=False, id="task.edit"),
        Binding("r", "rerun", "Re-run", show=False, id="task.rerun"),
        Binding("S", "rerun_successor", "Re-run on the successor model", show=False, id="task.rerun_successor"),
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
        Binding("space", "fullscreen", "Full screen", show=False, id="task.fullscreen"),
        Binding("t", "grid", "Grid of images", show=False, id="task.grid"),
        Binding("i", "import_image", "Import image…", show=False, id="app.import_image"),
        Binding("f6", "switch_pane", "Form ⇄ tasks", show=False, priority=True, id="app.switch_pane"),
        Binding("R", "reference", "Use image as reference", show=False, id="task.reference"),
        Binding("E", "edit_image", "Edit image with a prompt", show=False, id="task.edit_image"),
        Binding("x", "expand", "Expand image…", show=False, id="task.expand"),
        Binding("P", "parent", "Go to parent task", show=False, id="task.parent"),
        Binding("C", "children", "Go to a task made from it", show=False, id="task.children"),
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
            "rerun_successor",
            "duplicate",
            "star",
            "note",
            "starred_only",
            "compare",
            "cancel_queued",
            "move_queued",
            "summary",
            "fullscreen",
            "grid",
            "import_image",
            "reference",
            "edit_image",
            "expand",
            "parent",
            "children",
        }
    )

    def __init__(
        self,
        settings: Any,
        *,
        sandbox: Any = None,
        start_sandbox: bool = False,
        store: HistoryStore | None = None,
        image_protocol: str = "auto",
        clock: Callable[[], float] = time.time,
        poll_interval: float | None = None,
        start_poller: bool = True,
    ) -> None:
        super().__init__()
        self.stylesheet = self._css = CachedStylesheet(_css_cache_file(), variables=self.get_css_variables())
        self.settings = settings
        self.sandbox = sandbox
        # `start_sandbox`: the app starts an in-process sandbox after its first frame (it takes
        # a few hundred ms) and stops it on exit.
        self.sandbox_mode = sandbox is not None or start_sandbox
        self._own_sandbox: Any = None
        self.clock = clock
        self.image_protocol = image_protocol
        self.poll_interval = (
            poll_interval if poll_interval is not None else float(getattr(settings, "poll_interval", 1.0) or 1.0)
        )
        self.start_poller = start_poller
        self.caps: Capabilities = settings.capabilities()
        # Models the service answered "discontinued" for (user data), with the day it did.
        self.retired: dict[str, dt.date] = self._load_retired()
        self._session_ids: list[str] = []  # tasks sent from this run, for the session budget
        self.store = store or HistoryStore(history_dir(sandbox=self.sandbox_mode))
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
        yield GenerationForm(self.caps, draft=self._draft, retired=self.retired, id="form-pane", classes="-active")
        with Vertical(id="right"):
            with Vertical(id="tasks-pane"):
                yield Horizontal(id="filter-bar")  # its fields: built when first shown (_show_filter_bar)
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

    def format_title(self, title: str, sub_title: str) -> Content:
        # As Textual's, with the style given as an object: a style named by text would be
        # parsed against every theme variable, the first time, just to draw the header.
        if not sub_title:
            return Content(title)
        return Content.assemble(title, (" — ", DIM), Content(sub_title).stylize(DIM))

    def on_load(self) -> None:
        # Building the screen allocates a lot; full collections then cost ~100 ms of the
        # start. Collect again after the first frame, with the start-up objects frozen.
        gc.disable()

    def update_styles(self, node: DOMNode, animate: bool = True) -> None:
        # A class set in a widget's constructor (compact=True, a variant) restyles it at once,
        # though it is not in the DOM yet; mounting styles it again. Only the second counts:
        # the first was a fifth of the stylesheet's work before the first frame.
        if node is self or node.is_attached:
            super().update_styles(node, animate)

    def _first_frame_painted(self) -> None:
        gc.freeze()
        gc.enable()
        self._css.save()
        # The rest of the first page, and the total the title still lacks.
        self._load_more(max(PAGE_SIZE - self.table.row_count, 0), count=True)
        self.form.query_one(PromptArea).past_prompts = self._past_prompts(500)

    def on_mount(self) -> None:
        self.call_after_refresh(self._first_frame_painted)
        self.screen_stack[0].query_one("#tasks-pane").border_title = "Tasks"
        for message in self.settings.warnings:
            self.notify(plain(message), title="Config", severity="warning", timeout=10, markup=False)
        self._warned = 0
        self._flush_store_warnings()
        # The rows in view, no more: the rest of the page and the total follow the first frame.
        self.reload_table(self._rows_in_view(), count=False)
        self.set_interval(1.0, self.table.tick)
        self.sub_title = self.endpoint_label  # until connected: then the slots and units too
        if self.sandbox_mode and self.sandbox is None:
            self.call_after_refresh(self._start_sandbox)
        elif self.sandbox is not None or self.settings.has_credentials:
            # After the first frame: importing httpx, building its SSL context and the
            # reconcile pass are not needed to draw the window.
            self.call_after_refresh(self.ensure_connected)
        else:
            from kling_tui.ui.dialogs import SetupScreen

            self.push_screen(SetupScreen(), self._setup_done)
        self._fit_layout(self.size.width)
        if self.narrow and self.table.row_count:
            self._show_pane("tasks-pane")
            self.table.focus()
        else:
            self.form.focus_prompt()

    def _rows_in_view(self) -> int:
        """Rows the table shows before its pane is laid out: it has half the height below the
        header, less its border and column labels (rendering each row costs ~0.5 ms)."""
        return max(1, (self.size.height - 2) // 2 - 2)

    # -- layout for the terminal's width -------------------------------------------------
    @property
    def narrow(self) -> bool:
        return self.screen_stack[0].has_class("-narrow")

    def on_resize(self, event: events.Resize) -> None:
        self._fit_layout(event.size.width)

    def _fit_layout(self, width: int) -> None:
        main = self.screen_stack[0]
        narrow = width < NARROW_WIDTH
        if narrow == self.narrow:
            return
        main.set_class(narrow, "-narrow")
        form_pane, tasks_pane = main.query_one("#form-pane"), main.query_one("#tasks-pane")
        form_pane.border_subtitle = "f6 tasks" if narrow else ""
        tasks_pane.border_subtitle = "f6 form" if narrow else ""
        if narrow:
            focused = self.focused
            in_form = focused is not None and any(w.id == "form-pane" for w in focused.ancestors_with_self)
            self._show_pane("form-pane" if in_form else "tasks-pane")

    def _show_pane(self, pane_id: str) -> None:
        """In the narrow layout, show the form or the tasks and preview."""
        self.screen_stack[0].set_class(pane_id == "form-pane", "-show-form")

    # -- connection --------------------------------------------------------------------
    @property
    def endpoint_label(self) -> str:
        if self.sandbox_mode:
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
        ready = self.sandbox is not None if self.sandbox_mode else self.settings.has_credentials
        if self.workbench is None and ready:
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
        self._client = KlingClient(base_url, auth, caps=self.caps, request_deadline=self.settings.request_deadline)
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
            self.settings.sandbox = self.sandbox_mode = True
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

    def _load_retired(self) -> dict[str, dt.date]:
        sandbox = self.sandbox_mode or bool(getattr(self.settings, "sandbox", False))
        return {name: entry.since for name, entry in load_retired(sandbox=sandbox).items()}

    def _use_store(self, store: HistoryStore) -> None:
        """Switch histories before connecting (the sandbox keeps its own)."""
        self.store.close()
        self.store = store
        self._warned = 0
        self._flush_store_warnings()
        self.reload_table()
        self.form.query_one(PromptArea).past_prompts = self._past_prompts(500)

    @work(thread=True, group="sandbox")
    def _start_sandbox(self) -> None:
        from kling_tui.sandbox import Sandbox, SandboxConfig

        sandbox = Sandbox(SandboxConfig())
        try:
            sandbox.start()
        except (OSError, RuntimeError) as exc:
            message = f"The sandbox did not start: {exc}"
            self.call_from_thread(self.notify, plain(message), severity="error", timeout=30, markup=False)
            return
        self.sandbox = self._own_sandbox = sandbox
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
        self._css.save()  # with the CSS of the dialogs opened since
        if self.workbench is not None:
            await self.workbench.aclose()
        if self._client is not None:
            await self._client.aclose()
        if self._own_sandbox is not None:
            await asyncio.to_thread(self._own_sandbox.stop)

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
    def reload_table(self, limit: int = PAGE_SIZE, *, count: bool = True) -> None:
        """`count=False`: a full page leaves the total to `_load_more` (counting a large
        history reads its whole index from disk)."""
        rows = self.store.recent(limit, **self._table_filters())
        self.table.load(rows)
        if len(rows) < limit or count:
            self._total = len(rows) if len(rows) < limit else self.store.count(**self._table_filters())
            self._set_tasks_title(self._total)
        for status in self.screen_stack[0].query("#status-filter").results(Static):
            status.update(self._status_text())
        self.show_selected()

    def _status_text(self) -> Text:
        label, _statuses = STATUS_FILTERS[self.status_filter]
        return Text(f"status: {label}{' · ★ only' if self.starred_only else ''}")

    def _show_filter_bar(self) -> None:
        """Show the filter bar, building its fields the first time: the first frame has no use
        for them."""
        bar = self.screen_stack[0].query_one("#filter-bar", Horizontal)
        if not bar.children:
            placeholder = "words in the prompt, negative prompt, note, failure, model or task id"
            bar.mount(Input(placeholder=placeholder, id="filter"), Static(self._status_text(), id="status-filter"))
        bar.add_class("visible")

    def _set_tasks_title(self, total: int) -> None:
        shown = self.table.row_count
        more = f" · showing {shown}" if shown < total else ""
        self.screen_stack[0].query_one("#tasks-pane").border_title = f"Tasks ({total}{more})"

    def _table_filters(self) -> dict[str, Any]:
        _, statuses = STATUS_FILTERS[self.status_filter]
        return {"words": self.text_filter or None, "status": statuses, "starred": True if self.starred_only else None}

    def _matches_filter(self, record: TaskRecord) -> bool:
        if self.starred_only and not record.starred:
            return False
        _, statuses = STATUS_FILTERS[self.status_filter]
        if statuses and record.status not in statuses:
            return False
        if self.text_filter:
            return matches_words(self.text_filter, record_texts(record))
        return True

    @on(RecordChanged)
    def _record_changed(self, message: RecordChanged) -> None:
        record = message.record
        previous = self.table.row_data(record.local_id)
        self._count_spent(record)
        if record.status == "not_created" and (previous is None or previous.status != "not_created"):
            self.notify(plain(record.status_msg), title="Not created", severity="error", markup=False)
            self._remember_discontinued(record)
        if not self.table.known(record.local_id) and self._matches_filter(record):
            self.table.upsert(record)
            self._total += 1
            self._set_tasks_title(self._total)
        elif self.table.known(record.local_id):
            self.table.upsert(record)
        self.update_header()
        if self.table.selected_key == record.local_id:
            self.show_selected(record)

    def _remember_discontinued(self, record: TaskRecord) -> None:
        """The service said the model is gone: remember it (user data) and offer its successor."""
        name = discontinued_model(record.status_msg)
        if name is None or name in self.retired:
            return
        today = dt.date.today()
        try:
            remember_retired(name, record.status_msg, sandbox=self.sandbox_mode, today=today)
        except OSError as exc:
            self.log.warning(f"could not remember {name} as retired: {exc}")
        self.retired[name] = today
        self.form.mark_retired(name, today)
        successor = self.successor_of(record)
        if successor:
            key = self._key_for("task.rerun_successor")
            self.notify(
                plain(f"{name} is remembered as retired. {key} re-runs the task on {successor}."),
                timeout=8,
                markup=False,
            )

    def successor_of(self, record: TaskRecord) -> str | None:
        """The model to re-run `record` on: its model's successor, when that model has retired."""
        model = self.caps.get(record.model or self.caps.default_model)
        if model is None or not model.successor or self.caps.get(model.successor) is None:
            return None
        retired = model.name in self.retired or model.retired_on(dt.date.today())
        return model.successor if retired else None

    def _key_for(self, binding_id: str) -> str:
        for bindings in self._bindings.key_to_bindings.values():
            for binding in bindings:
                if binding.id == binding_id:
                    return self.get_key_display(binding)
        return binding_id

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
            successor = self.successor_of(record)
            if successor:
                note += f" · {self._key_for('task.rerun_successor')}: re-run on {successor}"
        self.preview.show_task(
            record.local_id,
            paths,
            list(record.image_urls),
            record.status,
            note,
            lineage=self._lineage(record),
            series=record.params.get("result_type") == "series",
        )

    def _lineage(self, record: TaskRecord) -> str:
        """Where a task came from (P goes there) and what was made from its images."""
        lines = []
        for parent in record.parents:
            source = self.store.get(parent["local_id"])
            what = f"“{short(source.prompt or source.kind, 40)}”" if source else f"task {parent['local_id']}"
            gone = "" if source else " (no longer in the history)"
            lines.append(f"↑ from {what} image {parent['image']}{gone}")
        if lines:
            lines[-1] += " · P goes there"
        children = self.store.children(record.local_id)
        if children:
            names = ", ".join(f"“{short(c.prompt or c.kind, 30)}”" for c in children[-3:])
            more = "" if len(children) <= 3 else f" (newest 3 of {len(children)})"
            lines.append(
                f"↓ made from it: {len(children)} task{'s' if len(children) != 1 else ''}: {names}{more} · C goes there"
            )
        return "\n".join(lines)

    @on(events.DescendantFocus)
    def _mark_active_pane(self, event: events.DescendantFocus) -> None:
        # A class on the pane that holds the focus, instead of :focus-within, which restyles a
        # whole pane (the form: ~90 widgets) on every move of the focus inside it.
        owner = next((w.id for w in event.widget.ancestors_with_self if w.id in PANES), None)
        if owner is None:
            return
        for pane_id in PANES:
            self.screen_stack[0].query_one(f"#{pane_id}").set_class(pane_id == owner, "-active")
        if self.narrow:
            self._show_pane(owner)

    @on(DataTable.RowHighlighted, "#tasks")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_selected()
        if event.cursor_row >= self.table.row_count - 1:
            self._load_more()

    def _load_more(self, limit: int = PAGE_SIZE, *, count: bool = False) -> None:
        """The next rows; the total is counted again when some came (or `count`: the title has
        none yet). Pressing down on the last row of the history asks again each time."""
        rows = self.store.recent(limit, offset=self.table.row_count, **self._table_filters())
        if rows:
            self.table.append(rows)
        if rows or count:
            self._total = self.store.count(**self._table_filters())
            self._set_tasks_title(self._total)

    @on(DataTable.RowSelected, "#tasks")
    def _row_selected(self) -> None:
        self.preview.focus()

    # -- submitting --------------------------------------------------------------------
    def action_submit(self) -> None:
        if self.screen is not self.screen_stack[0]:
            raise SkipAction()  # a dialog on top sends its own request with the same keys
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
        from kling_tui.api.prices import describe
        from kling_tui.work.variants import estimate_units

        units = estimate_units(requests, self.caps)
        questions = (
            [f"Submit {len(requests)} tasks, an estimated {describe(units, self.caps)}?"] if len(requests) > 1 else []
        )
        overruns = self._overruns(units)
        if overruns:
            figures = "\n".join(f"Over budget: {o}." for o in overruns)
            questions = [figures, *questions] if questions else [figures, "Submit anyway?"]
        if questions:
            from kling_tui.ui.dialogs import ConfirmDialog

            self.push_screen(
                ConfirmDialog("\n".join(questions), yes="Submit"),
                lambda yes: self._enqueue(requests) if yes else None,
            )
            return
        self._enqueue(requests)

    def _overruns(self, units: float) -> list[Any]:
        """The config's budgets this submit would pass (none set: nothing to ask)."""
        if (
            getattr(self.settings, "budget_daily", None) is None
            and getattr(self.settings, "budget_session", None) is None
        ):
            return []
        from kling_tui.work.spending import over_budget, spent_by, spent_today

        today = spent_today(self.store, self.caps)
        session = spent_by(self.store, self.caps, self._session_ids)
        return over_budget(self.settings, units, today=today, session=session)

    def _enqueue(self, requests: list[Any], parent: TaskRecord | None = None) -> None:
        from kling_tui.work.variants import new_group

        assert self.workbench is not None
        group = new_group() if len(requests) > 1 else None
        for request in requests:
            if parent is not None:
                request.parents = [(parent.local_id, 0)]  # image 0: the task itself, re-run
            try:
                record = self.workbench.enqueue(request, group=group)
            except InvalidRequest as exc:
                self.notify(str(exc), title="Not sent", severity="error", markup=False)
                return
            except OSError as exc:
                self.notify(f"Could not write history: {exc}", severity="error", markup=False)
                return
            self._session_ids.append(record.local_id)
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
        self._focus_pane("form-pane", self.form.focus_prompt)

    def action_focus_tasks(self) -> None:
        self._focus_pane("tasks-pane", self.table.focus)

    def action_focus_preview(self) -> None:
        self._focus_pane("preview-pane", self.preview.focus)

    def _focus_pane(self, pane_id: str, focus: Callable[[], object]) -> None:
        if not self.narrow or self.screen_stack[0].has_class("-show-form") == (pane_id == "form-pane"):
            focus()
            return
        # Shown first, focused once laid out: a hidden widget takes no focus, and the screen
        # drops the focus of the pane being hidden when it lays out.
        self.set_focus(None)
        self._show_pane(pane_id)
        self.call_after_refresh(focus)

    def action_filter(self) -> None:
        self._show_filter_bar()
        self.screen_stack[0].query_one("#filter", Input).focus()

    def action_escape(self) -> None:
        if self.focused is not None and self.focused.id == "filter":
            self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value.strip()
        self.table.matches = highlighter(search_terms(self.text_filter))
        self.reload_table()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    def action_cycle_status(self) -> None:
        self.status_filter = (self.status_filter + 1) % len(STATUS_FILTERS)
        self._show_filter_bar()
        self.reload_table()

    def action_help(self) -> None:
        from kling_tui.ui.dialogs import HelpScreen

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
            (
                "Preview",
                [
                    ("left / right (h / l)", "Previous / next image"),
                    ("enter", "Full screen"),
                    ("R / E / x", "Use, edit or expand the image shown"),
                ],
            ),
            (
                "Full screen",
                [
                    ("left / right (h / l)", "Previous / next image"),
                    ("up / down (k / j)", "Previous / next task, in the table's order"),
                    ("z", "Fit / 1:1 / zoom"),
                    ("shift+arrows (H J K L)", "Pan, at 1:1 and zoomed"),
                    ("escape / q", "Back to where you were"),
                ],
            ),
            (
                "Grid",
                [
                    ("arrows (h j k l)", "Move between images"),
                    ("enter / space", "Full screen"),
                    ("p / y / c", "Copy path / URL / prompt"),
                    ("o / f / r", "Open / star / re-run"),
                    ("R", "Add to the form's references (Omni)"),
                ],
            ),
            (
                "Form",
                [
                    ("tab / shift+tab", "Next / previous field"),
                    ("up / down in the prompt", "Past prompts, like a shell"),
                    ("ctrl+r in the prompt", "Search past prompts"),
                    ("{a|b} / {{name}} in the prompt", "A template: one task per alternative / value"),
                    ("@ in the prompt", "Omni: insert a reference as <<<image_N>>>"),
                    ("a / t on the references", "Add a file or URL / an image from history"),
                    ("d / K / J on the references", "Remove (renumbers the prompt) / move up / down"),
                ],
            ),
        ]

    def _notify_copied(self, what: str) -> None:
        self.notify(f"Copied the {what} (OSC 52).", timeout=3)

    # The table's keys act on the selected task; the grid calls these with its highlighted image.
    def copy_url(self, url: str | None) -> None:
        if url:
            self.copy_to_clipboard(url)
            self._notify_copied("image URL")

    def copy_path(self, path: Path | None) -> None:
        if path:
            self.copy_to_clipboard(str(path))
            self._notify_copied("image path")

    def copy_prompt(self, record: TaskRecord | None) -> None:
        if record and record.prompt:
            self.copy_to_clipboard(record.prompt)
            self._notify_copied("prompt")

    def open_path(self, path: Path | None) -> None:
        from kling_tui.base.opener import open_in_viewer

        if path is None:
            self.notify("No saved image to open.", severity="warning")
            return
        error = open_in_viewer(path)
        if error:
            self.notify(error, severity="warning", markup=False)

    def action_copy_url(self) -> None:
        self.copy_url(self.preview.current_url)

    def action_copy_path(self) -> None:
        self.copy_path(self.preview.current_path)

    def action_copy_prompt(self) -> None:
        self.copy_prompt(self.selected_record())

    def action_open_image(self) -> None:
        self.open_path(self.preview.current_path)

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
        if record is None:
            return
        if record.kind == "expand":
            self._open_expand(
                record.params.get("image") or "", "the same image", self._parent_of_source(record), record
            )
            return
        references = self._references_of(record) if record.kind == "omni" else None
        self.form.load_params(record.kind, record.params, references)
        self.form.focus_prompt()
        self.notify("Loaded into the form.", timeout=2)

    # -- iterating on images -----------------------------------------------------------
    def _selected_image(self) -> Reference | None:
        """The image the preview shows of the selected task (its first when the preview is elsewhere)."""
        record = self._selected_or_warn()
        if record is None:
            return None
        index = self.preview.index + 1 if self.preview.owner == record.local_id else 1
        return self._task_image(record, index)

    def _task_image(self, record: TaskRecord, index: int) -> Reference | None:
        """Image `index` (1-based) of `record` as an Omni reference that keeps its lineage."""
        from kling_tui.work.references import ImageRefError, image_of

        try:
            found = image_of(self.store, record, index)
        except ImageRefError as exc:
            self.notify(plain(exc), title="No image to use", severity="warning", markup=False)
            return None
        return Reference.of_task(found.source, record.local_id, index)

    def _references_of(self, record: TaskRecord) -> list[Reference]:
        """An Omni task's input images, named after the history tasks they came from."""
        by_path: dict[str, tuple[str, int]] = {}
        for parent in record.parents:
            parent_record = self.store.get(parent["local_id"])
            if parent_record and parent["image"] <= len(parent_record.image_paths):
                path = self.store.task_dir(parent_record.local_id) / parent_record.image_paths[parent["image"] - 1]
                by_path[str(path)] = (parent["local_id"], parent["image"])
            if parent_record and parent["image"] <= len(parent_record.image_urls):
                by_path[parent_record.image_urls[parent["image"] - 1]] = (parent["local_id"], parent["image"])
        references = []
        for source in record.params.get("images") or []:
            origin = by_path.get(source)
            references.append(Reference.of_task(source, *origin) if origin else Reference.of(source))
        return references

    def _parent_of_source(self, record: TaskRecord) -> tuple[str, int] | None:
        parents = record.parents
        return (parents[0]["local_id"], parents[0]["image"]) if len(parents) == 1 else None

    def action_reference(self) -> None:
        self.add_reference(self._selected_image())

    def reference_task_image(self, local_id: str, index: int) -> None:
        """The grid's `R`: image `index` (1-based) of a task becomes the form's next reference."""
        record = self.store.get(local_id)
        if record is not None:
            self.add_reference(self._task_image(record, index))

    def add_reference(self, reference: Reference | None) -> None:
        if reference is None:
            return
        number = self.form.add_reference(reference)
        self.notify(f"Added to the form as <<<image_{number}>>> (Omni).", timeout=3)

    def action_edit_image(self) -> None:
        reference = self._selected_image()
        if reference is None:
            return
        self.form.start_edit(reference)
        self.notify("Omni edit: describe the change to <<<image_1>>>, then ctrl+j.", timeout=4)

    def action_expand(self) -> None:
        reference = self._selected_image()
        if reference is not None:
            self._open_expand(reference.source, reference.label, reference.parent)

    def _open_expand(
        self, source: str, label: str, parent: tuple[str, int] | None, previous: TaskRecord | None = None
    ) -> None:
        from kling_tui.api.validation import image_size
        from kling_tui.ui.expand_dialog import ExpandDialog

        size = None
        if source and not source.startswith(("http://", "https://")):
            try:
                found = image_size(Path(source).expanduser().read_bytes())
            except OSError:
                found = None
            size = (found[1], found[2]) if found else None

        def send(request: Any) -> None:
            if request is None:
                return
            if not self.ensure_connected():
                self.notify("Not connected yet.", severity="warning")
                return
            self._enqueue([request])

        dialog = ExpandDialog(source, label, size, parent)
        self.push_screen(dialog, send)
        if previous is not None:
            dialog.call_after_refresh(dialog.fill, previous.params)

    def _go_to_task(self, local_id: str) -> None:
        record = self.store.get(local_id)
        if record is None:
            self.notify(f"Task {local_id} is no longer in the history.", severity="warning")
            return
        if not self.table.known(local_id):
            self.table.upsert(record)  # sorted into its place by time, even when filtered out
        self.table.move_cursor(row=self.table.get_row_index(local_id), animate=False)
        self.table.focus()

    def action_parent(self) -> None:
        record = self._selected_or_warn()
        if record is None:
            return
        parents = record.parents
        if not parents:
            self.notify("This task was not made from another task's image.", timeout=3)
            return
        if len(parents) == 1:
            self._go_to_task(parents[0]["local_id"])
            return
        labels = []
        for parent in parents:
            source = self.store.get(parent["local_id"])
            about = f" · {short(source.prompt, 40)}" if source else ""
            labels.append(f"{parent['local_id']} image {parent['image']}{about}")
        from kling_tui.ui.pickers import QuickPick

        self.push_screen(
            QuickPick("Go to which parent?", labels),
            lambda choice: self._go_to_task(choice.split(" ")[0]) if choice else None,
        )

    def action_children(self) -> None:
        record = self._selected_or_warn()
        if record is None:
            return
        children = self.store.children(record.local_id)
        if not children:
            self.notify("Nothing was made from this task's images yet.", timeout=3)
            return
        if len(children) == 1:
            self._go_to_task(children[0].local_id)
            return
        from kling_tui.ui.pickers import QuickPick

        newest = list(reversed(children))[: len(QuickPick.KEYS)]
        labels = [f"{c.local_id} · {c.kind} · {short(c.prompt, 40)}" for c in newest]
        self.push_screen(
            QuickPick("Go to which task made from it?", labels),
            lambda choice: self._go_to_task(choice.split(" ")[0]) if choice else None,
        )

    @on(ReferenceList.AddRequested)
    def _pick_history_image(self, message: ReferenceList.AddRequested) -> None:
        from kling_tui.work.references import ImageRefError, image_of

        rows = [r for r in self.store.recent(PAGE_SIZE * 5, status=("succeed",)) if r.image_count]
        items = [
            (
                f"{short(row.prompt, 60)} · {row.model or '-'} · image {i}/{row.image_count} · {row.local_id}",
                (row.local_id, i),
            )
            for row in rows
            for i in range(1, row.image_count + 1)
        ]
        if not items:
            self.notify("No finished task with images in the history yet.", severity="warning")
            return

        def chosen(choice: tuple[str, int] | None) -> None:
            record = self.store.get(choice[0]) if choice else None
            if choice is None or record is None:
                return
            try:
                found = image_of(self.store, record, choice[1])
            except ImageRefError as exc:
                self.notify(plain(exc), title="No image to use", severity="warning", markup=False)
                return
            number = self.form.add_reference(Reference.of_task(found.source, record.local_id, choice[1]))
            self.notify(f"Added as <<<image_{number}>>>.", timeout=3)

        from kling_tui.ui.pickers import TaskImagePick

        self.push_screen(TaskImagePick(items), chosen)

    def _resubmit(self, record: TaskRecord, *, as_child: bool = False, **changes: Any) -> None:
        from kling_tui.api.types import TemplateUse, request_from_params

        if not self.ensure_connected():
            self.notify("Not connected yet.", severity="warning")
            return
        params = {**record.params, **changes}
        params.pop("external_task_id", None)  # a fresh id: this is a new task
        request = request_from_params(record.kind, params)
        if record.template is not None:  # the same filling of the same template
            request.template = TemplateUse(record.template, tuple(record.template_values.items()))
        notice = self.caps.retirement_notice(getattr(request, "model_name", None), dt.date.today(), self.retired)
        if notice:  # the form warns as you edit; a re-run from the table warns as it goes
            self.notify(plain(notice), title="Model retiring", severity="warning", markup=False)
        self._enqueue([request], parent=record if as_child else None)

    def action_rerun(self) -> None:
        record = self._selected_or_warn()
        if record:
            self._resubmit(record)

    def action_rerun_successor(self) -> None:
        record = self._selected_or_warn()
        if record is None:
            return
        successor = self.successor_of(record)
        if successor is None:
            model = record.model or self.caps.default_model
            self.notify(f"{model} has not retired, or no successor is named for it.", severity="warning", markup=False)
            return
        self._resubmit(record, as_child=True, model_name=successor)

    def rerun_record(self, record: TaskRecord) -> None:
        before = self.table.row_count
        self._resubmit(record)
        if self.table.row_count > before:
            self.notify("Sent again.", timeout=2)

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
        from kling_tui.ui.pickers import QuickPick

        self.push_screen(
            QuickPick(title, options),
            lambda choice: self._resubmit(record, **{field: choice}) if choice else None,
        )

    def action_star(self) -> None:
        record = self._selected_or_warn()
        if record:
            self.star_record(record)

    def star_record(self, record: TaskRecord) -> None:
        if self.workbench:
            self.workbench.annotate(record.local_id, starred=not record.starred)

    def action_note(self) -> None:
        record = self._selected_or_warn()
        if record is None or self.workbench is None:
            return

        def save(note: str | None) -> None:
            if note is not None and self.workbench:
                self.workbench.annotate(record.local_id, note=note)
                self.show_selected()

        from kling_tui.ui.dialogs import TextDialog

        self.push_screen(TextDialog("Note for this task", record.note, "anything you want to remember"), save)

    def action_starred_only(self) -> None:
        self.starred_only = not self.starred_only
        self._show_filter_bar()
        self.reload_table()

    def action_compare(self) -> None:
        record = self._selected_or_warn()
        if record is None:
            return
        if self._compare_mark is None and record.parent_id and self.store.get(record.parent_id) is not None:
            self._compare_mark = record.parent_id  # a re-run is compared with its original
        if self._compare_mark is None or self._compare_mark == record.local_id:
            self._compare_mark = record.local_id
            self.notify("Marked as A. Press v on another task to compare.", timeout=3)
            return
        left = self.store.get(self._compare_mark)
        self._compare_mark = None
        if left is None:
            return
        from kling_tui.ui.compare import CompareScreen

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
        from kling_tui.ui.summary import SummaryScreen

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

    def _past_prompts(self, limit: int) -> list[str]:
        """Sent prompts as the form takes them back: a brace they were sent with stays literal."""
        from kling_tui.work.templates import escape

        return [escape(p) for p in self.store.prompts(limit)]

    @on(PromptArea.SearchRequested)
    def _search_prompts(self) -> None:
        prompts = self._past_prompts(2000)

        def chosen(prompt: str | None) -> None:
            if prompt is not None:
                self.form.set_prompt(prompt)

        from kling_tui.ui.pickers import PromptSearch

        self.push_screen(PromptSearch(prompts), chosen)

    # -- saved templates ----------------------------------------------------------------
    def action_templates(self) -> None:
        from kling_tui.ui.pickers import TemplatePick
        from kling_tui.work.saved_templates import load_templates

        templates, warnings = load_templates()
        for warning in warnings:
            self.notify(warning, severity="warning", markup=False)
        if not templates:
            self.notify("No saved templates yet: ctrl+b saves the form's prompt as one.", severity="warning")
            return

        def chosen(template: Any) -> None:
            if template is not None:
                self._template_name = template.name
                self._focus_pane(
                    "form-pane", lambda: self.form.use_template(template.body, template.variables, template.zipped)
                )

        self.push_screen(TemplatePick(templates), chosen)

    def action_save_template(self) -> None:
        from kling_tui.ui.dialogs import TextDialog
        from kling_tui.ui.template_values import TemplateValues
        from kling_tui.work.saved_templates import SavedTemplate, TemplateNameError, save_template

        body = self.form.query_one(PromptArea).text
        if not body.strip():
            self.notify("The prompt is empty: nothing to save as a template.", severity="warning")
            return
        table = next(iter(self.form.query(TemplateValues)), None)
        values = table.values() if table is not None and table.display else {}
        zipped = bool(table is not None and table.display and table.zipped)

        def save(name: str | None) -> None:
            if name is None:
                return
            try:
                _, aside = save_template(SavedTemplate(name, body, values, zipped))
            except (TemplateNameError, OSError) as exc:
                self.notify(f"Not saved: {exc}", severity="error", markup=False)
                return
            self._template_name = name.strip()
            if aside:
                self.notify(f"The old templates file could not be read in full; it was kept as {aside}.", markup=False)
            self.notify(f"Saved the template “{name.strip()}” (ctrl+t recalls it).", markup=False, timeout=3)

        self.push_screen(
            TextDialog(
                "Save the prompt as a template",
                getattr(self, "_template_name", ""),
                "a name",
                hint="enter saves (a template of the same name is replaced) · escape cancels",
            ),
            save,
        )

    # -- seeing images ------------------------------------------------------------------
    def table_order(self) -> list[str]:
        """Local ids in the table's order (filters and sorting as shown)."""
        return [row.key.value for row in self.table.ordered_rows if row.key.value is not None]

    def action_fullscreen(self) -> None:
        record = self._selected_or_warn()
        if record is None:
            return
        index = self.preview.index if self.preview.owner == record.local_id else 0
        from kling_tui.ui.viewer import ViewerScreen

        self.push_screen(
            ViewerScreen(self.store, self.table_order(), self.table.cursor_row, index, self.image_protocol)
        )

    def action_grid(self) -> None:
        record = self._selected_or_warn()
        if record is None:
            return
        records = [record]
        title = f"{len(record.image_paths)} images · {record.model or ''} · {' '.join(record.prompt.split())}"
        if record.group:
            members = (self.store.get(key) for key in self.table_order())
            records = [r for r in members if r is not None and r.group == record.group]
            title = f"Variant group ⧉{record.group[:4]} · {len(records)} tasks · the labels say what differs"
        if not any(r.image_paths for r in records):
            self.notify("No saved images to show yet.", severity="warning")
            return
        from kling_tui.ui.grid import GridScreen

        self.push_screen(GridScreen(self.store, records, self.image_protocol, title))

    def use_as_reference(self, path: Path) -> None:
        """Put an image into the form's reference field (or the first free subject, in multi mode)."""
        form = self.form
        if form.mode == "generation":
            field: str | None = "image"
        else:
            field = next((f for f in SUBJECT_FIELDS if not form.query_one(f"#{f}", Input).value.strip()), None)
        if field is None:
            self.notify("Every subject image is set; clear one first.", severity="warning")
            return
        form.query_one(f"#{field}", Input).value = str(path)
        form.validate_now()
        what = "reference" if field == "image" else "subject"
        self.notify(f"{path.name} is now the {what} image.", markup=False)

    def action_import_image(self) -> None:
        from kling_tui.ui.form import PathSuggester

        def chosen(value: str | None) -> None:
            if value and value.strip():
                self._import_image(Path(value.strip()).expanduser())

        from kling_tui.ui.dialogs import TextDialog

        self.push_screen(
            TextDialog(
                "Import an image: its parameters fill the form",
                placeholder="path to a .png, .jpg or .webp",
                suggester=PathSuggester(),
                hint="enter to import · escape to cancel",
            ),
            chosen,
        )

    @work(group="import", exclusive=True)
    async def _import_image(self, path: Path) -> None:
        import asyncio

        from kling_tui.history.metadata import MetadataError, read_parameters, resolve_references

        try:
            found = await asyncio.to_thread(read_parameters, path)
        except MetadataError as exc:
            self.notify(plain(exc), title="Not imported", severity="error", markup=False)
            return
        if found is None:
            self.notify(f"{path.name} was not made by kling-tui.", markup=False)
            self.use_as_reference(path)
            return
        self.form.load_params(found.kind, resolve_references(found.params, path.parent))
        self.action_focus_form()
        self.notify(f"Loaded the parameters of {path.name} ({found.kind}).", markup=False)

    def action_switch_pane(self) -> None:
        in_form = self.focused is not None and any(w.id == "form-pane" for w in self.focused.ancestors_with_self)
        if in_form:
            self.action_focus_tasks()
        else:
            self.action_focus_form()

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
            successor = self.successor_of(record)
            if successor:
                yield SystemCommand(
                    f"Re-run on {successor}",
                    "Its model has retired: send it on the successor",
                    self.action_rerun_successor,
                )
            yield SystemCommand("Same task on another model", "Pick the model", partial(self.action_duplicate, "model"))
            yield SystemCommand(
                "Same task in another ratio", "Pick the aspect ratio", partial(self.action_duplicate, "ratio")
            )
            yield SystemCommand("Unstar task" if record.starred else "Star task", "Toggle the star", self.action_star)
            yield SystemCommand("Note on task", "Add or edit a note", self.action_note)
            yield SystemCommand("Compare with…", "Mark this task, then another", self.action_compare)
            if record.image_paths:
                yield SystemCommand("Full screen", "The selected image on the whole terminal", self.action_fullscreen)
                yield SystemCommand("Grid of images", "The task's (or its variant group's) images", self.action_grid)
            if record.status == "succeed" and record.image_urls:
                yield SystemCommand("Use image as reference", "Omni: the previewed image", self.action_reference)
                yield SystemCommand(
                    "Edit image with a prompt", "Omni: the image as <<<image_1>>>", self.action_edit_image
                )
                yield SystemCommand("Expand image…", "Grow its sides (outpainting)", self.action_expand)
            if record.parents:
                yield SystemCommand("Go to parent task", "The task its input came from", self.action_parent)
            yield SystemCommand("Go to a task made from it", "Its children (lineage)", self.action_children)
            if record.status == "queued":
                yield SystemCommand("Cancel queued task", "It was not sent yet", self.action_cancel_queued)
        yield SystemCommand("Starred only", "Toggle the star filter", self.action_starred_only)
        yield SystemCommand("Units summary", "Per day and per model", self.action_summary)
        yield SystemCommand("Import image", "Fill the form from an image's parameters", self.action_import_image)
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
            from kling_tui.ui.dialogs import ConfirmDialog

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
