"""Prompt templates in the app: the values table, the count, submitting, the grid's labels and
saved templates, driven by keys against the sandbox."""

from __future__ import annotations

from textual.widgets import Checkbox, Input, Static, TextArea

from kling_tui.config import load_settings
from kling_tui.ui.app import make_app
from kling_tui.ui.dialogs import ConfirmDialog
from kling_tui.ui.grid import GridScreen
from tests.tui_helpers import sandbox_history, wait_for


def app_for(sandbox, **kwargs):
    kwargs.setdefault("image_protocol", "halfcell")
    kwargs.setdefault("poll_interval", 0.05)
    return make_app(load_settings(), sandbox=sandbox, **kwargs)


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def type_prompt(app, pilot, text: str) -> None:
    app.form.focus_prompt()
    prompt = app.query_one("#prompt", TextArea)
    prompt.text = ""
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


async def fill_template(app, pilot, prompt: str, **values: str) -> None:
    """Set the prompt, wait for its values table, and type each variable's values."""
    app.query_one("#prompt", TextArea).text = prompt
    for name, text in values.items():
        await wait_for(pilot, lambda name=name: app.query(f"#var-{name}"), what=f"the {name} row")
        app.query_one(f"#var-{name}", Input).value = text


async def test_a_plain_prompt_never_mounts_the_values_table(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        await type_prompt(app, pilot, "a red fox")
        await wait_for(pilot, lambda: "1 image" in text_of(app, "#estimate"))
        assert not app.query("#template-values")


async def test_values_table_count_submit_and_grid_labels(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", TextArea).text = "a {red|blue} {{animal}}"
        await wait_for(pilot, lambda: app.query("#var-animal"), what="the animal row")
        await wait_for(
            pilot, lambda: "{{animal}}: is used in the prompt but has no values" in text_of(app, "#problems")
        )
        assert app.query_one("#var-animal", Input).has_class("-invalid")

        app.query_one("#var-animal", Input).focus()
        for key in "fox,owl,cat":
            await pilot.press("comma" if key == "," else key)
        await wait_for(pilot, lambda: text_of(app, "#problems") == "", what="no problems")
        await wait_for(pilot, lambda: text_of(app, "#estimate").startswith("6 tasks · 6 images · estimate ≈"))

        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert "Submit 6 tasks" in app.screen.question
        await pilot.press("y")
        await wait_for(pilot, lambda: app.table.row_count == 6, what="six rows")
        store = sandbox_history()
        records = [r for r in (store.get(row.local_id) for row in store.recent(10)) if r is not None]
        assert sorted(r.prompt for r in records) == sorted(
            f"a {c} {a}" for c in ("red", "blue") for a in ("fox", "owl", "cat")
        )
        assert {r.template for r in records} == {"a {red|blue} {{animal}}"}
        assert len({r.group for r in records}) == 1
        await wait_for(pilot, lambda: all(r and r.image_paths for r in map(store.get, (x.local_id for x in records))))
        store.close()

        app.table.focus()
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen))
        labels = sorted(item.label for item in app.screen.items)
        assert labels == sorted(f"{c} · {a}" for c in ("red", "blue") for a in ("fox", "owl", "cat"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, GridScreen))

        app.table.focus()
        app.table.move_cursor(row=0)
        selected = app.table.selected_key
        await pilot.press("r")  # a re-run is the same filling of the same template
        await wait_for(pilot, lambda: app.table.row_count == 7, what="the re-run")
        store = sandbox_history()
        rerun = store.get(app.table.selected_key)
        original = store.get(selected)
        store.close()
        assert rerun is not None and original is not None and rerun.local_id != original.local_id
        assert (rerun.prompt, rerun.template, rerun.template_values) == (
            original.prompt,
            original.template,
            original.template_values,
        )


async def test_zip_toggle_pairs_and_a_mismatch_is_a_problem_the_form_survives(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        await fill_template(app, pilot, "{{a}} at {{b}}", a="fox, owl", b="dawn, dusk, noon")
        await wait_for(pilot, lambda: text_of(app, "#estimate").startswith("6 tasks"))
        app.query_one("#template-zip", Checkbox).value = True
        await wait_for(
            pilot,
            lambda: (
                "zipped slots need the same number of values ({{a}} has 2, {{b}} has 3)" in text_of(app, "#problems")
            ),
        )
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: any("zipped slots" in n.message for n in app._notifications))
        assert not isinstance(app.screen, ConfirmDialog)
        assert app.table.row_count == 0
        assert app.query_one("#prompt", TextArea).text == "{{a}} at {{b}}"  # nothing lost
        app.query_one("#var-b", Input).value = "dawn, dusk"
        await wait_for(pilot, lambda: text_of(app, "#estimate").startswith("2 tasks"))


async def test_more_than_the_cap_is_refused_with_the_count(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        thirty = ",".join(str(i) for i in range(30))
        await fill_template(app, pilot, "{{a}} {{b}}", a=thirty, b=thirty)
        await wait_for(
            pilot, lambda: "makes 900 tasks, more than the 500 one submit may send" in text_of(app, "#problems")
        )


async def test_values_follow_the_prompt_and_come_back_with_their_variable(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.query_one("#prompt", TextArea)
        await fill_template(app, pilot, "a {{animal}}", animal="fox, owl")
        prompt.text = "a plain fox"
        await wait_for(pilot, lambda: not app.query_one("#template-values").display)
        assert text_of(app, "#estimate").startswith("1 image")
        prompt.text = "a {{animal}} again"
        await wait_for(pilot, lambda: app.query("#var-animal") and app.query_one("#template-values").display)
        assert app.query_one("#var-animal", Input).value == "fox, owl"


async def test_a_variable_gone_and_back_at_once_keeps_one_row_with_its_values(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.query_one("#prompt", TextArea)
        await fill_template(app, pilot, "a {{animal}}", animal="fox, owl")
        for text in ("a {{animal}", "a {{animal}}", "a {{anima}}", "a {{animal}}"):  # typed, no pause
            prompt.text = text
            await pilot.pause(0)
        await wait_for(pilot, lambda: "2 tasks" in text_of(app, "#estimate"), what="the two variants")
        assert len(app.query("#var-animal")) == 1
        assert app.query_one("#var-animal", Input).value == "fox, owl"
        assert not app.query_one("#template-row-anima").display


async def test_save_a_template_then_recall_it_with_a_fuzzy_search(sandbox):
    from kling_tui.ui.dialogs import TextDialog
    from kling_tui.ui.pickers import TemplatePick
    from kling_tui.work.saved_templates import SavedTemplate, load_templates, save_template

    save_template(SavedTemplate("landscapes", "a {misty|sunny} valley"))
    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.query_one("#prompt", TextArea)
        await fill_template(app, pilot, "a {red|blue} {{animal}} at {{time}}", animal="fox, owl", time="dawn, dusk")
        app.query_one("#template-zip", Checkbox).value = True
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: isinstance(app.screen, TextDialog))
        for key in "animals":
            await pilot.press(key)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, TextDialog))
        templates, _ = load_templates()
        assert [t.name for t in templates] == ["animals", "landscapes"]
        assert templates[0] == SavedTemplate(
            "animals", "a {red|blue} {{animal}} at {{time}}", {"animal": ["fox", "owl"], "time": ["dawn", "dusk"]}, True
        )

        prompt.text = "something else"
        await wait_for(pilot, lambda: not app.query_one("#template-values").display)
        app.query_one("#template-zip", Checkbox).value = False
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, TemplatePick))
        for key in "nmls":  # n…m…l…s: in "animals" only
            await pilot.press(key)
        await wait_for(pilot, lambda: len(app.screen._found) == 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, TemplatePick))
        assert prompt.text == "a {red|blue} {{animal}} at {{time}}"
        await wait_for(
            pilot, lambda: app.query("#var-time") and app.query_one("#var-time", Input).value == "dawn, dusk"
        )
        assert app.query_one("#var-animal", Input).value == "fox, owl"
        assert app.query_one("#template-zip", Checkbox).value is True
        await wait_for(
            pilot, lambda: text_of(app, "#estimate").startswith("2 tasks")
        )  # red fox at dawn, blue owl at dusk


async def test_a_template_name_that_breaks_a_rule_is_refused_and_nothing_is_lost(sandbox):
    from kling_tui.ui.dialogs import TextDialog
    from kling_tui.work.saved_templates import load_templates

    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", TextArea).text = "a {red|blue} fox"
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: isinstance(app.screen, TextDialog))
        await pilot.press("space", "enter")
        await wait_for(pilot, lambda: any("template name: must not be empty" in n.message for n in app._notifications))
        assert load_templates() == ([], [])
        assert app.query_one("#prompt", TextArea).text == "a {red|blue} fox"


async def test_template_values_survive_a_restart_in_the_draft(sandbox):
    from kling_tui.history.draft import load_draft

    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        await fill_template(app, pilot, "a {{animal}} at {{time}}", animal="fox, owl", time="dawn")
        app.query_one("#template-zip", Checkbox).value = True
        await wait_for(pilot, lambda: load_draft().get("template-zip") is True, what="the draft")
    again = app_for(sandbox)
    async with again.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: again.query("#var-time"), what="the restored rows")
        assert again.query_one("#var-animal", Input).value == "fox, owl"
        assert again.query_one("#var-time", Input).value == "dawn"
        await wait_for(pilot, lambda: again.query("#template-zip"), what="the zip toggle")
        assert again.query_one("#template-zip", Checkbox).value
        await wait_for(pilot, lambda: text_of(again, "#estimate").startswith("2 tasks"))


async def test_editing_a_task_sent_with_braces_keeps_them_literal(sandbox):
    store = sandbox_history()
    record = store.new_record("generation", {"prompt": "a sign saying {open}", "model_name": "kling-v1", "n": 1})
    store.update(record.local_id, status="succeed")
    store.close()
    app = app_for(sandbox)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 1)
        app.table.focus()
        await pilot.press("e")
        prompt = app.query_one("#prompt", TextArea)
        await wait_for(pilot, lambda: prompt.text == r"a sign saying \{open\}")
        await wait_for(pilot, lambda: text_of(app, "#estimate").startswith("1 image"))
        assert text_of(app, "#problems") == ""
        assert [r.prompt for r in app.form.variant_requests()] == ["a sign saying {open}"]
