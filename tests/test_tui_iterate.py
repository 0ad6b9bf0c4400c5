"""Iterating on prompts in the real app: edit, re-run, duplicate, history, star, compare, variants, queue, units."""

from __future__ import annotations

from textual.widgets import Checkbox, Input, SelectionList, TextArea

from kling_tui.config import load_settings
from kling_tui.ui.app import make_app
from kling_tui.ui.choice import Choice
from kling_tui.ui.compare import CompareScreen
from kling_tui.ui.dialogs import ConfirmDialog
from kling_tui.ui.pickers import PromptSearch, QuickPick
from kling_tui.ui.summary import SummaryScreen
from tests.tui_helpers import cell_text, sandbox_history, wait_for


def app_for(sandbox, settings=None, **kwargs):
    kwargs.setdefault("image_protocol", "halfcell")
    kwargs.setdefault("poll_interval", 0.05)
    return make_app(settings or load_settings(), sandbox=sandbox, **kwargs)


async def submit(app, pilot, prompt: str, **fields) -> str:
    app.query_one("#prompt", TextArea).text = prompt
    for widget_id, value in fields.items():
        widget = app.query_one(f"#{widget_id}")
        widget.value = value
    await pilot.pause()
    before = app.table.row_count
    await pilot.press("ctrl+j")
    await wait_for(pilot, lambda: app.table.row_count == before + 1, what="the new row")
    return app.table.selected_key


def rendered(widget) -> str:
    """What a Static shows, as plain text (tables included)."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(widget.content)
    return console.export_text()


def status(app, key):
    return cell_text(app.table, key, "status")


async def test_edit_loads_a_task_and_rerun_sends_it_again(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        key = await submit(app, pilot, "a brass compass", model="kling-v2", n="2")
        await wait_for(pilot, lambda: "succeed" in status(app, key))
        app.query_one("#prompt", TextArea).text = "something else"
        app.query_one("#model", Choice).value = "kling-v1"
        app.table.focus()
        await pilot.press("e")
        assert app.query_one("#prompt", TextArea).text == "a brass compass"
        assert app.query_one("#model", Choice).value == "kling-v2"
        assert app.query_one("#n", Input).value == "2"
        app.table.focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.table.row_count == 2)
        again = app.table.selected_key
        assert again != key
    first, second = sandbox_history().get(key), sandbox_history().get(again)
    assert second.params["prompt"] == first.params["prompt"] and second.params["n"] == 2
    assert second.external_task_id != first.external_task_id


async def test_duplicate_on_another_model_takes_two_keys(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        key = await submit(app, pilot, "a paper crane")
        app.table.focus()
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, QuickPick))
        choice = app.screen.options[1]
        await pilot.press("2")
        await wait_for(pilot, lambda: app.table.row_count == 2)
        new = app.table.selected_key
        assert new != key
        assert sandbox_history().get(new).model == choice
        app.table.focus()
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, QuickPick))
        ratio = app.screen.options[0]
        await pilot.press("1")
        await wait_for(pilot, lambda: app.table.row_count == 3)
        assert sandbox_history().get(app.table.selected_key).aspect_ratio == ratio


async def test_prompt_history_like_a_shell_and_ctrl_r(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        await submit(app, pilot, "first idea")
        await submit(app, pilot, "second idea")
        prompt = app.query_one("#prompt", TextArea)
        prompt.text = ""
        prompt.focus()
        await pilot.press("up")
        assert prompt.text == "second idea"
        await pilot.press("up")
        assert prompt.text == "first idea"
        await pilot.press("down")
        assert prompt.text == "second idea"
        await pilot.press("down")
        assert prompt.text == ""
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptSearch))
        await pilot.press(*"firs", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, PromptSearch))
        assert prompt.text == "first idea"


async def test_star_note_and_starred_filter(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        plain = await submit(app, pilot, "plain one")
        starred = await submit(app, pilot, "keeper")
        app.table.focus()
        await pilot.press("f")
        await wait_for(pilot, lambda: "★" in cell_text(app.table, starred, "prompt"))
        await pilot.press("n")
        await pilot.press(*"use for the poster", "enter")
        await wait_for(pilot, lambda: sandbox_history().get(starred).note == "use for the poster")
        await pilot.press("F")
        await wait_for(pilot, lambda: app.table.row_count == 1)
        assert app.table.known(starred) and not app.table.known(plain)
    assert sandbox_history().get(starred).starred is True


async def test_compare_two_tasks_marks_the_prompt_differences(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        a = await submit(app, pilot, "a red fox in snow")
        b = await submit(app, pilot, "a blue fox in deep snow", aspect="1:1")
        await wait_for(pilot, lambda: "succeed" in status(app, a) and "succeed" in status(app, b))
        app.table.focus()
        app.table.move_cursor(row=app.table.get_row_index(a))
        await pilot.press("v")
        app.table.move_cursor(row=app.table.get_row_index(b))
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        from kling_tui.ui.compare import prompt_diff

        old, new = prompt_diff("a red fox in snow", "a blue fox in deep snow")
        assert any("strike" in str(span.style) for span in old.spans)
        assert "deep" in new.plain
        shown = rendered(app.screen.query_one("#compare-params Static"))
        assert "aspect_ratio" in shown and "1:1" in shown and "16:9" in shown
        await pilot.press("escape")


async def test_variants_fan_out_as_one_group_after_confirming(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        app.query_one("#prompt", TextArea).text = "a teapot\na kettle"
        app.query_one("#variants-open").focus()
        await pilot.press("enter")  # the variant fields are built when opened
        await wait_for(pilot, lambda: app.focused is app.query_one("#split-lines"), what="the variant fields")
        app.query_one("#split-lines", Checkbox).value = True
        app.query_one("#more-models", SelectionList).select("kling-v2")
        await wait_for(pilot, lambda: "4 tasks" in str(app.query_one("#estimate").render()))
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.table.row_count == 4)
    rows = sandbox_history().recent(10)
    assert {r.group for r in rows} != {None} and len({r.group for r in rows}) == 1
    assert sorted((r.prompt, r.model) for r in rows) == [
        ("a kettle", "kling-v1"),
        ("a kettle", "kling-v2"),
        ("a teapot", "kling-v1"),
        ("a teapot", "kling-v2"),
    ]


async def test_queued_tasks_wait_for_slots_and_can_be_cancelled(sandbox):
    settings = load_settings()
    settings.concurrency = 2
    sandbox.state.config.processing_seconds = 2.0  # long enough to see the queue
    app = app_for(sandbox, settings)
    async with app.run_test(size=(140, 40)) as pilot:
        running = await submit(app, pilot, "takes both slots", n="2")
        waiting = await submit(app, pilot, "waits its turn", n="1")
        assert "queued" in status(app, waiting)
        assert "1 queued" in app.sub_title
        app.table.focus()
        app.table.move_cursor(row=app.table.get_row_index(waiting))
        await pilot.press("X")
        await wait_for(pilot, lambda: "not created" in status(app, waiting))
        await wait_for(pilot, lambda: "succeed" in status(app, running))
    assert sandbox_history().get(waiting).status_msg == "cancelled before it was sent"
    assert sandbox.state.counters()["tasks_created"] == 1


async def test_units_summary_per_model(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: "1000 units left" in app.sub_title)
        key = await submit(app, pilot, "four tiles", n="4")
        await wait_for(pilot, lambda: "succeed" in status(app, key))
        # Counted off at once, without asking the server again (it allows one call a minute).
        await wait_for(pilot, lambda: "996 units left" in app.sub_title)
        assert sandbox.state.counters()["costs"] == 1
        app.table.focus()
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, SummaryScreen))

        def text() -> str:
            return " ".join(rendered(w) for w in app.screen.query("Static"))

        await wait_for(pilot, lambda: "kling-v1" in text(), what="the summary's tables")
        assert " 4 " in text()
        assert "996 of 1000 left" in text()  # fetched when the summary opens, with the 4 units spent
        await pilot.press("escape")
        await wait_for(pilot, lambda: "units left" in app.sub_title)


async def test_multi_image_mode_on_a_model_that_has_it(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        app.query_one("#mode", Choice).value = "multi"
        await pilot.pause()
        assert app.form._model_options == ["kling-v2", "kling-v2-1"]
        assert not app.query_one("#subject-1", Input).has_class("hidden")
        assert app.query_one("#image", Input).has_class("hidden")
        app.query_one("#subject-1", Input).value = "https://example.com/cat.png"
        app.query_one("#style", Input).value = "https://example.com/style.png"
        key = await submit(app, pilot, "the cat in the style")
        await wait_for(pilot, lambda: "succeed" in status(app, key))
    record = sandbox_history().get(key)
    assert record.kind == "multi" and record.params["subject_images"] == ["https://example.com/cat.png"]
    assert sandbox.state.counters()["multi_create"] == 1


async def test_a_damaged_config_is_set_aside_and_the_app_starts(sandbox):
    from kling_tui.base.locations import config_file

    config_file().write_text("[auth\\napi_key = ", encoding="utf-8")
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: any("config" in n.message.lower() for n in app._notifications))
        key = await submit(app, pilot, "still works")
        await wait_for(pilot, lambda: "succeed" in status(app, key))
    assert any(p.name.startswith("config.toml.damaged") for p in config_file().parent.iterdir())


async def test_advanced_fields_open_on_enter_and_what_they_hold_is_sent(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        assert not app.query("#external-id")  # built when first opened
        app.query_one("#prompt", TextArea).text = "a weather vane"
        app.query_one("#advanced-open").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.focused is app.query_one("#external-id"), what="the advanced fields")
        assert not app.query_one("#advanced-open").display
        await pilot.press(*"vane-1")
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: app.table.row_count == 1)
        key = app.table.selected_key
    record = sandbox_history().get(key)
    assert record is not None and record.external_task_id == "vane-1"


async def test_a_loaded_callback_url_opens_the_advanced_fields(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        app.form.restore({"prompt": "a kite", "callback": "https://example.com/hook"})
        await wait_for(pilot, lambda: bool(app.query("#callback")), what="the advanced fields")
        await wait_for(pilot, lambda: app.query_one("#callback", Input).value == "https://example.com/hook")
        assert not app.query_one("#advanced-open").display
        assert app.form.values()["callback"] == "https://example.com/hook"
