"""The whole loop in the real app on the real sandbox: type, submit, watch, preview, restart."""

from __future__ import annotations

from textual.widgets import Input, TextArea

from kling_tui.config import load_settings
from kling_tui.ui.app import make_app
from tests.tui_helpers import cell_text, sandbox_history, wait_for


def app_for(sandbox, **kwargs):
    kwargs.setdefault("image_protocol", "halfcell")
    kwargs.setdefault("poll_interval", 0.05)
    return make_app(load_settings(), sandbox=sandbox, **kwargs)


async def test_prompt_to_preview_and_back_after_restart(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        assert isinstance(app.focused, TextArea)
        await pilot.press(*"a red fox in the snow")
        app.query_one("#n", Input).value = "4"
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: app.table.row_count == 1, what="the new row")
        key = app.table.selected_key
        seen = set()

        def status() -> str:
            text = cell_text(app.table, key, "status")
            seen.add(text.split()[1])
            return text

        await wait_for(pilot, lambda: "succeed" in status(), what="the task to succeed")
        assert {"submitted", "processing", "succeed"} & seen >= {"succeed"}
        assert cell_text(app.table, key, "n") == "4"
        await wait_for(pilot, lambda: app.preview.shown is not None, what="the preview")
        assert "1/4" in str(app.preview.query_one("#preview-caption").render())
        app.preview.focus()
        await pilot.press("right")
        await wait_for(pilot, lambda: app.preview.shown is not None and app.preview.shown.name == "image-2.png")
        assert "2/4" in str(app.preview.query_one("#preview-caption").render())
        # The form keeps its contents, so the next variant is one edit away.
        assert app.query_one("#prompt", TextArea).text == "a red fox in the snow"

    record = sandbox_history().get(key)
    assert record.status == "succeed" and len(record.image_paths) == 4

    again = app_for(sandbox)
    async with again.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: again.table.row_count == 1, what="history in the table")
        assert "a red fox" in cell_text(again.table, key, "prompt")
        assert "succeed" in cell_text(again.table, key, "status")
        # The unsent prompt is back, and typing goes on from its end.
        await pilot.press(*" at dawn")
        assert again.query_one("#prompt", TextArea).text == "a red fox in the snow at dawn"


async def test_invalid_form_is_not_sent_and_names_the_field(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press(*"x")
        app.query_one("#n", Input).value = "12"
        await pilot.press("ctrl+j")
        await pilot.pause()
        problems = str(app.query_one("#problems").render())
        assert "n: must be from 1 to 9" in problems
        assert app.table.row_count == 0
        assert sandbox.state.counters()["create"] == 0
        assert app.query_one("#prompt", TextArea).text == "x"
