"""Keys, dialogs, errors and hostile text in the real app against the real sandbox."""

from __future__ import annotations

import os
import stat

import httpx
import pytest
from textual.widgets import Input, TextArea

from benchmarks.fixtures import populate
from kling_tui.api.types import GenerationRequest
from kling_tui.base.locations import history_dir
from kling_tui.config import load_settings
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.ui.app import make_app
from kling_tui.ui.choice import Choice, ChoiceMenu
from kling_tui.ui.dialogs import HelpScreen, SetupScreen
from tests.tui_helpers import cell_text, sandbox_history, wait_for


def app_for(sandbox, **kwargs):
    kwargs.setdefault("image_protocol", "halfcell")
    kwargs.setdefault("poll_interval", 0.05)
    return make_app(load_settings(), sandbox=sandbox, **kwargs)


async def submit_prompt(app, pilot, prompt: str) -> str:
    app.query_one("#prompt", TextArea).text = prompt
    before = app.table.row_count
    await pilot.press("ctrl+j")
    await wait_for(pilot, lambda: app.table.row_count == before + 1, what="the new row")
    return app.table.selected_key


async def test_help_lists_every_app_key(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = str(app.screen.query_one("VerticalScroll Static").render())
        for binding in app.BINDINGS:
            assert binding.description in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_a_choice_opens_its_list_from_the_keyboard_and_escape_keeps_the_value(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        mode = app.query_one("#mode", Choice)
        mode.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceMenu), what="the list of modes")
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: mode.value == "multi", what="the second mode")
        assert app.focused is mode
        await wait_for(pilot, lambda: app.query_one("#subject-1").display, what="the subject images")
        await pilot.press("space")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceMenu))
        await pilot.press("down", "escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceMenu))
        assert mode.value == "multi" and app.focused is mode


async def test_failed_task_shows_its_reason_and_api_errors_their_code(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        failed = await submit_prompt(app, pilot, "a storm #fail")
        await wait_for(pilot, lambda: "failed" in cell_text(app.table, failed, "status"))
        assert "Failure requested by the prompt" in cell_text(app.table, failed, "prompt")
        await pilot.pause()
        # However long the reason, every column but the prompt stays in view at 120 columns.
        widths = [column.get_render_width(app.table) for column in app.table.ordered_columns]
        assert sum(widths[:-1]) + 10 <= app.table.scrollable_content_region.width

        sandbox.state.faults.add(endpoint="create", kind="error", code=1102, times=1)
        refused = await submit_prompt(app, pilot, "a calm sea")
        await wait_for(pilot, lambda: "not created" in cell_text(app.table, refused, "status"))
        assert "1102" in cell_text(app.table, refused, "prompt")
    assert sandbox_history().get(refused).status == "not_created"


async def test_markup_in_prompts_and_messages_is_shown_literally(sandbox):
    hostile = "[bold]loud[/bold] [@click=app.quit]quit[/] \x1b[31mred"
    app = app_for(sandbox)
    async with app.run_test(size=(160, 36)) as pilot:
        key = await submit_prompt(app, pilot, hostile + " #fail")
        await wait_for(pilot, lambda: "failed" in cell_text(app.table, key, "status"))
        shown = cell_text(app.table, key, "prompt")
        assert "[bold]loud[/bold]" in shown and "[@click=app.quit]" in shown
        assert "\x1b" not in shown and "\\x1b[31mred" in shown  # the escape is shown, not sent
        assert app.is_running


async def test_escape_sequences_from_history_never_reach_the_terminal(sandbox):
    store = sandbox_history()
    record = store.new_record("generation", {"prompt": "calm \x1b]0;pwned\x07 \x1b[2J sea", "n": 1})
    store.update(
        record.local_id, status="failed", status_msg="[red]bad[/red] \x1b[31mreason", finished_at=record.created_at + 5
    )
    store.close()
    app = app_for(sandbox)
    async with app.run_test(size=(160, 36)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 1)
        app.table.focus()
        await pilot.pause()
        screen = app.export_screenshot()
        assert "\x1b" not in screen and "\x07" not in screen
        assert "[red]bad[/red]" in cell_text(app.table, record.local_id, "prompt")


async def test_the_table_pages_through_a_long_history_and_its_title_counts_it(sandbox):
    store = sandbox_history()
    populate(store, 230, seed=4)
    store.close()
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        tasks_pane = app.query_one("#tasks-pane")
        # The first frame shows the rows in view; the rest of the first page and the total follow.
        await wait_for(pilot, lambda: str(tasks_pane.border_title) == "Tasks (230 · showing 200)")
        assert app.table.row_count == 200
        app.table.focus()
        await pilot.press("G", "down")
        await wait_for(pilot, lambda: app.table.row_count == 230, what="the next page")
        assert str(tasks_pane.border_title) == "Tasks (230)"
        await pilot.press("down", "down")  # past the last row: nothing more, the title stays
        assert app.table.row_count == 230 and str(tasks_pane.border_title) == "Tasks (230)"


async def test_a_history_that_just_fills_the_view_is_counted_in_the_title(sandbox):
    # As many tasks as rows in view at 120x36: the first load is full, and nothing more comes.
    store = sandbox_history()
    populate(store, 15, seed=6)
    store.close()
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        assert app._rows_in_view() == 15
        tasks_pane = app.query_one("#tasks-pane")
        await wait_for(pilot, lambda: str(tasks_pane.border_title) == "Tasks (15)")
        assert app.table.row_count == 15


async def test_filter_and_status_cycle_narrow_the_table(sandbox):
    store = sandbox_history()
    populate(store, 30, seed=3)
    store.close()
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 30)
        app.table.focus()
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter", Input)
        await pilot.press(*"red fox")
        await wait_for(pilot, lambda: 0 < app.table.row_count < 30)
        for key in list(app.table._rows):
            assert "red fox" in cell_text(app.table, key, "prompt")
        await pilot.press("enter")
        await pilot.press("s", "s")  # all -> running -> succeed
        await wait_for(pilot, lambda: all("succeed" in cell_text(app.table, k, "status") for k in app.table._rows))


async def test_copy_prompt_uses_the_clipboard(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        key = await submit_prompt(app, pilot, "a copper kettle")
        await wait_for(pilot, lambda: "succeed" in cell_text(app.table, key, "status"))
        app.table.focus()
        await pilot.press("c")
        assert app.clipboard == "a copper kettle"
        await wait_for(pilot, lambda: app.preview.current_path is not None)
        await pilot.press("p")
        assert app.clipboard.endswith("image-1.png")
        await pilot.press("y")
        assert app.clipboard.startswith(sandbox.base_url)


async def test_running_task_is_tracked_again_after_restart(sandbox):
    sandbox.state.faults.clear()
    app = app_for(sandbox, start_poller=False)
    async with app.run_test(size=(120, 36)) as pilot:
        key = await submit_prompt(app, pilot, "a slow glacier")
        await wait_for(pilot, lambda: sandbox_history().get(key).task_id is not None)
    assert sandbox_history().get(key).status in ("submitted", "processing")
    again = app_for(sandbox)
    async with again.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: "succeed" in cell_text(again.table, key, "status"))
        await wait_for(pilot, lambda: sandbox_history().get(key).image_paths == ["image-1.png"], what="the saved image")


async def test_a_sandbox_session_leaves_the_real_history_alone(sandbox):
    # A task waiting for the real service must never be settled or sent by a sandbox session.
    with HistoryStore(history_dir()) as real:
        unconfirmed = real.new_record("generation", GenerationRequest(prompt="real, unconfirmed").params())
        queued = real.new_record("generation", GenerationRequest(prompt="real, queued").params())
        real.update(queued.local_id, status="queued", queue_position=1.0)
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        key = await submit_prompt(app, pilot, "a sandbox cat")
        await wait_for(pilot, lambda: "succeed" in cell_text(app.table, key, "status"))
        assert app.table.row_count == 1
    with HistoryStore(history_dir()) as real:
        assert real.get(unconfirmed.local_id).status == "pending"
        assert real.get(queued.local_id).status == "queued"
        assert real.get(key) is None and sandbox_history().get(key).status == "succeed"
    assert sandbox.state.counters()["tasks_created"] == 1


async def test_choosing_the_sandbox_at_setup_switches_to_its_history(sandbox):
    with HistoryStore(history_dir()) as real:
        populate(real, 2, seed=5)
    app = make_app(load_settings(), image_protocol="halfcell", poll_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert app.table.row_count == 2
        await pilot.click("#mode-sandbox")
        await pilot.click("#save")
        await wait_for(pilot, lambda: app.workbench is not None, what="the sandbox")
        assert app.table.row_count == 0
        key = await submit_prompt(app, pilot, "a first sandbox light")
        await wait_for(pilot, lambda: "succeed" in cell_text(app.table, key, "status"))
        await app.workbench.aclose()
    assert load_settings().sandbox is True
    assert sandbox_history().get(key).prompt == "a first sandbox light"


async def test_the_sandbox_starts_after_the_first_frame_and_stops_with_the_app():
    """`kling-tui --sandbox`: the window does not wait for the sandbox; it connects once it is up."""
    app = make_app(load_settings(), start_sandbox=True, image_protocol="halfcell", poll_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        assert app.sub_title == "sandbox" and not isinstance(app.screen, SetupScreen)
        await wait_for(pilot, lambda: app.workbench is not None, what="the sandbox")
        key = await submit_prompt(app, pilot, "a lighthouse at dawn")
        await wait_for(pilot, lambda: app.sandbox.state.counters()["tasks_created"] == 1, what="the task")
        base_url = app.sandbox.base_url
    assert sandbox_history().get(key).prompt == "a lighthouse at dawn"
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url)


async def test_first_run_setup_saves_a_private_config_and_connects(sandbox):
    app = make_app(load_settings(), image_protocol="halfcell", poll_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        await pilot.click("#mode-apikey")
        app.screen.query_one("#api-key", Input).value = DEFAULT_API_KEY
        await pilot.click("#region-custom")
        app.screen.query_one("#base-url", Input).value = sandbox.base_url
        await pilot.click("#save")
        await wait_for(pilot, lambda: app.workbench is not None, what="a connection")
        key = await submit_prompt(app, pilot, "a first light")
        await wait_for(pilot, lambda: "succeed" in cell_text(app.table, key, "status"))
    settings = load_settings()
    assert settings.api_key == DEFAULT_API_KEY and settings.base_url == sandbox.base_url
    mode = stat.S_IMODE(os.stat(settings.path).st_mode)
    assert mode == 0o600


async def test_damaged_history_file_is_set_aside_and_the_app_starts(sandbox):
    store = sandbox_history()
    ids = populate(store, 3, seed=1)
    store.close()
    (sandbox_history().task_dir(ids[0]) / "task.toml").write_text("this is [not toml", encoding="utf-8")
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 3)
        app.table.focus()
        await pilot.press("G")  # the oldest task: its file is damaged
        await wait_for(pilot, lambda: any("task.toml" in n.message for n in app._notifications))
        assert app.is_running
    leftovers = sorted(p.name for p in sandbox_history().task_dir(ids[0]).iterdir())
    assert any(name.startswith("task.toml.damaged-") for name in leftovers)
    assert sandbox_history().get(ids[1]) is not None and sandbox_history().get(ids[2]) is not None


async def test_keymap_from_config_rebinds_submit(sandbox):
    from kling_tui.config import save_settings

    settings = load_settings()
    settings.keymap = {"app.submit": "ctrl+s"}
    save_settings(settings)
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        app.query_one("#prompt", TextArea).text = "rebound"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.table.row_count == 1, what="a submit on ctrl+s")
        help_rows = dict((d, k) for _, rows in app.help_sections() for k, d in rows)
        assert "^s" in help_rows["Submit"] or "ctrl+s" in help_rows["Submit"]


async def test_a_config_readable_by_others_is_warned_about(sandbox):
    from kling_tui.config import save_settings

    settings = load_settings()
    settings.api_key = "not-a-real-key"
    path = save_settings(settings)
    os.chmod(path, 0o644)
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("readable" in m for m in messages)
        assert not any("not-a-real-key" in m for m in messages)


async def test_the_pane_holding_the_focus_is_marked(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        panes = {name: app.query_one(f"#{name}-pane") for name in ("form", "tasks", "preview")}

        def active() -> list[str]:
            return [name for name, pane in panes.items() if pane.has_class("-active")]

        assert app.focused is app.query_one("#prompt") and active() == ["form"]
        await pilot.press("f3")
        await wait_for(pilot, lambda: active() == ["tasks"])
        await pilot.press("f4")
        await wait_for(pilot, lambda: active() == ["preview"])
        await pilot.press("f2")
        await wait_for(pilot, lambda: active() == ["form"] and app.focused is app.query_one("#prompt"))
        await pilot.press("tab")  # moving inside the form keeps it marked
        await wait_for(pilot, lambda: app.focused is not app.query_one("#prompt"))
        assert active() == ["form"]
