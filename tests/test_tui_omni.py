"""Iterating on images in the real app against the real sandbox: the Omni form and its references,
`@`, editing, expanding and referencing a result from the table, lineage and series."""

from __future__ import annotations

from PIL import Image
from textual.widgets import Input, TextArea

from kling_tui.config import load_settings
from kling_tui.history.draft import load_draft
from kling_tui.ui.app import make_app
from kling_tui.ui.choice import Choice
from kling_tui.ui.expand_dialog import ExpandDialog
from kling_tui.ui.pickers import TaskImagePick
from kling_tui.ui.references import Reference, ReferenceCompletion, ReferenceInputDialog, ReferenceList
from tests.tui_helpers import cell_text, sandbox_history, shown, wait_for


def app_for(sandbox, **kwargs):
    kwargs.setdefault("image_protocol", "halfcell")
    kwargs.setdefault("poll_interval", 0.05)
    return make_app(load_settings(), sandbox=sandbox, **kwargs)


def png(path, size=(640, 480), colour=(200, 90, 40)) -> str:
    Image.new("RGB", size, colour).save(path)
    return str(path)


def problems_text(app) -> str:
    return str(app.query_one("#problems").render())


async def add_file(app, pilot, path: str) -> None:
    app.query_one(ReferenceList).focus()
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, ReferenceInputDialog))
    app.screen.query_one(Input).value = path
    await pilot.press("enter")
    await wait_for(pilot, lambda: not isinstance(app.screen, ReferenceInputDialog))


async def finished_task(app, pilot, prompt: str, **fields) -> str:
    """Submit a generation and wait until its images are saved; returns its local id."""
    app.query_one("#prompt", TextArea).text = prompt
    for widget_id, value in fields.items():
        app.query_one(f"#{widget_id}").value = value
    await pilot.pause()
    before = app.table.row_count
    await pilot.press("ctrl+j")
    await wait_for(pilot, lambda: app.table.row_count == before + 1, what="the new row")
    key = app.table.selected_key
    # Drawing and saving a few 1k images takes seconds on a loaded machine.
    await wait_for(pilot, lambda: saved(app, key), timeout=60, what="the saved images")
    return key


def saved(app, key: str) -> bool:
    record = app.store.get(key)  # the app's own store: no second index connection while it writes
    # Images are saved one by one: wait for every one of them.
    return bool(record and record.status == "succeed" and len(record.image_paths) == len(record.image_urls) > 0)


async def test_omni_mode_lists_references_and_renumbers_the_prompt_on_removal(sandbox, tmp_path):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        app.query_one("#mode", Choice).value = "omni"
        await pilot.pause()
        models = [str(option[1]) for option in app.query_one("#model", Choice).options]
        assert "kling-image-o1" in models and "kling-v2" not in models
        assert app.query_one(ReferenceList).display and not app.query_one("#negative").display
        cat = png(tmp_path / "cat.png")
        sofa = png(tmp_path / "sofa.jpg", colour=(20, 60, 200))
        await add_file(app, pilot, cat)
        await add_file(app, pilot, sofa)
        listed = app.query_one(ReferenceList)
        assert [r.label for r in listed.references] == ["cat.png", "sofa.jpg"]
        assert str(listed.get_option_at_index(1).prompt) == "2  sofa.jpg"
        assert app.query_one("#aspect", Choice).value == "auto"  # Omni's default
        prompt = app.query_one("#prompt", TextArea)
        prompt.text = "put <<<image_2>>> under the cat"
        await wait_for(pilot, lambda: "never refers to <<<image_1>>>" in shown(app, "omni-hint"))

        prompt.text = "the cat from <<<image_1>>> on the sofa in <<<image_2>>>"
        listed.focus()
        listed.highlighted = 0
        await pilot.press("d")
        assert [r.label for r in listed.references] == ["sofa.jpg"]
        assert prompt.text == "the cat from <<<image_?>>> on the sofa in <<<image_1>>>"
        await wait_for(pilot, lambda: "<<<image_?>>> stood for a removed image" in problems_text(app))
        await pilot.press("ctrl+j")
        await pilot.pause()
        assert app.table.row_count == 0  # nothing sent, the form kept
        assert prompt.text.startswith("the cat from <<<image_?>>>")

        # Reordering keeps each reference on its image too.
        await add_file(app, pilot, cat)
        prompt.text = "<<<image_1>>> then <<<image_2>>>"
        listed.focus()
        listed.highlighted = 1
        await pilot.press("K")
        assert [r.label for r in listed.references] == ["cat.png", "sofa.jpg"]
        assert prompt.text == "<<<image_2>>> then <<<image_1>>>"


async def test_element_ids_are_checked_against_the_prompt(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        app.query_one("#mode", Choice).value = "omni"
        await pilot.pause()
        app.query_one("#elements", Input).value = "el-123"
        app.query_one("#prompt", TextArea).text = "<<<element_1>>> meets <<<element_2>>>"
        await wait_for(pilot, lambda: "<<<element_2>>> refers to no element (1 given)" in problems_text(app))
        app.query_one("#elements", Input).value = "el-123, el-456"
        await wait_for(pilot, lambda: "element" not in problems_text(app))


async def test_at_offers_the_references_and_inserts_one(sandbox, tmp_path):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        app.query_one("#mode", Choice).value = "omni"
        await pilot.pause()
        await add_file(app, pilot, png(tmp_path / "a.png"))
        await add_file(app, pilot, png(tmp_path / "b.png"))
        prompt = app.query_one("#prompt", TextArea)
        prompt.text = "blend "
        prompt.focus()
        prompt.move_cursor(prompt.document.end)
        await pilot.press("@")
        await wait_for(pilot, lambda: isinstance(app.screen, ReferenceCompletion))
        assert "b.png" in str(app.screen.query_one("#completion-list").get_option_at_index(1).prompt)
        await pilot.press("2")
        await wait_for(pilot, lambda: not isinstance(app.screen, ReferenceCompletion))
        assert prompt.text == "blend <<<image_2>>>"
        await pilot.press("space", "@", "down", "enter")
        await wait_for(pilot, lambda: prompt.text == "blend <<<image_2>>> <<<image_2>>>")
        await pilot.press("space", "@", "escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ReferenceCompletion))
        assert prompt.text.endswith(" @")  # escape keeps what was typed
        # Outside Omni mode an @ is just an @.
        app.query_one("#mode", Choice).value = "generation"
        await pilot.pause()
        prompt.focus()
        await pilot.press("@")
        await pilot.pause()
        assert not isinstance(app.screen, ReferenceCompletion)
        assert prompt.text.endswith("@@")


async def test_edit_key_sends_an_omni_edit_that_records_its_parent(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        parent = await finished_task(app, pilot, "a red bicycle", model="kling-v2", n="2")
        app.preview.focus()
        await pilot.press("right")  # the preview's second image
        await pilot.press("E")
        assert app.form.mode == "omni"
        prompt = app.query_one("#prompt", TextArea)
        assert app.focused is prompt and prompt.text == "<<<image_1>>> "
        assert [r.label for r in app.form.references] == [f"task {parent} image 2"]
        await pilot.press(*"in blue")
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: app.table.row_count == 2)
        child = app.table.selected_key
        await wait_for(pilot, lambda: "succeed" in cell_text(app.table, child, "status"), what="the edit")
        await wait_for(pilot, lambda: "↑ from “a red bicycle” image 2 · P goes there" in shown(app, "preview-lineage"))
        app.table.focus()
        await pilot.press("P")
        assert app.table.selected_key == parent
        await wait_for(
            pilot, lambda: "↓ made from it: 1 task: “<<<image_1>>> in blue”" in shown(app, "preview-lineage")
        )
    record = sandbox_history().get(child)
    assert record.kind == "omni" and record.prompt == "<<<image_1>>> in blue"
    assert record.parents == [{"local_id": parent, "image": 2}]


async def test_reference_key_adds_the_previewed_image_and_p_walks_to_the_parent(sandbox, tmp_path):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        first = await finished_task(app, pilot, "a lighthouse", model="kling-v2")
        second = await finished_task(app, pilot, "a stormy sea", model="kling-v2")
        app.table.focus()
        await pilot.press("R")  # the newest task, selected
        app.table.move_cursor(row=app.table.get_row_index(first))
        await pilot.press("R")
        assert app.form.mode == "omni"
        assert [r.parent for r in app.form.references] == [(second, 1), (first, 1)]
        app.query_one("#prompt", TextArea).text = "<<<image_2>>> in <<<image_1>>>"
        await pilot.pause()
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: app.table.row_count == 3)
        child = app.table.selected_key
        await wait_for(pilot, lambda: "succeed" in cell_text(app.table, child, "status"))
        assert app.store.get(child).parents == [
            {"local_id": second, "image": 1},
            {"local_id": first, "image": 1},
        ]
        app.table.focus()
        await pilot.press("P")  # two parents: pick one
        await pilot.press("2")
        await wait_for(pilot, lambda: app.table.selected_key == first)
        await pilot.press("P")
        assert app.table.selected_key == first  # no parent: stays, says so
        await pilot.press("C")  # and back down to what was made from it
        assert app.table.selected_key == child


async def test_expand_dialog_shows_the_size_explains_the_area_rule_and_sends(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        parent = await finished_task(app, pilot, "a cabin", model="kling-v2", aspect="16:9")
        width, height = Image.open(app.store.task_dir(parent) / "image-1.png").size
        app.table.focus()
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExpandDialog))
        dialog = app.screen
        await pilot.press("3")  # 1:1 around it
        assert dialog.query_one("#presets").highlighted == 2  # the list shows the preset chosen
        size = str(dialog.query_one("#expand-size").render())
        assert f"{width}×{height} → {width}×{width} px" in size
        assert dialog.query_one("#side-up", Input).value == dialog.query_one("#side-down", Input).value != "0"
        dialog.query_one("#side-left", Input).value = "1"
        dialog.query_one("#side-right", Input).value = "1"
        await pilot.pause()
        problems = str(dialog.query_one("#expand-problems").render())
        assert "at most 3x the original's area" in problems and "(1 + left + right) × (1 + up + down)" in problems
        await pilot.press("ctrl+j")
        assert isinstance(app.screen, ExpandDialog)  # not sent
        await pilot.press("5")  # focus is on the presets: 2x wider
        dialog.query_one("#side-left", Input).value = "0.5"
        dialog.query_one("#side-up", Input).value = "0"
        dialog.query_one("#side-down", Input).value = "0"
        await pilot.pause()
        assert f"→ {width * 2}×{height} px" in str(dialog.query_one("#expand-size").render())
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: not isinstance(app.screen, ExpandDialog))
        await wait_for(pilot, lambda: app.table.row_count == 2)
        child = app.table.selected_key
        await wait_for(pilot, lambda: saved(app, child), timeout=60, what="the expansion")
    record = sandbox_history().get(child)
    assert record.kind == "expand" and record.parents == [{"local_id": parent, "image": 1}]
    assert record.params["left_expansion_ratio"] == 0.5 and record.params["right_expansion_ratio"] == 0.5
    assert Image.open(sandbox_history().task_dir(child) / record.image_paths[0]).size == (width * 2, height)


async def test_history_picker_adds_an_image_of_a_past_task(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        await finished_task(app, pilot, "a green teapot", model="kling-v2")
        key = await finished_task(app, pilot, "an orange kettle", model="kling-v2", n="2")
        app.query_one("#mode", Choice).value = "omni"
        await pilot.pause()
        app.query_one(ReferenceList).focus()
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskImagePick))
        await pilot.press(*"orkt")  # fuzzy: letters in order
        assert len(app.screen._found) == 2  # the kettle's two images, not the teapot's
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, TaskImagePick))
        assert [r.parent for r in app.form.references] == [(key, 2)]
        assert app.form.references[0].label == f"task {key} image 2"


async def test_a_series_is_shown_as_one_numbered_set(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        app.query_one("#mode", Choice).value = "omni"
        await pilot.pause()
        app.query_one("#model", Choice).value = "kling-v3-omni"
        await pilot.pause()
        app.query_one("#result-type", Choice).value = "series"
        await pilot.pause()
        assert app.query_one("#series-box").display and not app.query_one("#n-box").display
        app.query_one("#series-amount", Input).value = "3"
        await wait_for(pilot, lambda: "3 images on kling-v3-omni" in str(app.query_one("#estimate").render()))
        key = await finished_task(app, pilot, "a fox's day in four seasons")
        assert len(app.store.get(key).image_paths) == 3
        caption = app.preview.query_one("#preview-caption")
        await wait_for(pilot, lambda: str(caption.render()).startswith("series 1/3 · image-1"))
        app.preview.focus()
        await pilot.press("right")
        assert str(caption.render()).startswith("series 2/3 · image-2")


async def test_an_omni_draft_comes_back_after_a_restart(sandbox, tmp_path):
    app = app_for(sandbox)
    cat = png(tmp_path / "cat.png")
    async with app.run_test(size=(140, 48)) as pilot:
        app.query_one("#mode", Choice).value = "omni"
        await pilot.pause()
        app.query_one("#model", Choice).value = "kling-v3-omni"
        await add_file(app, pilot, cat)
        app.query_one("#prompt", TextArea).text = "<<<image_1>>> as a mosaic"
        await pilot.pause(0.3)
    again = app_for(sandbox)
    async with again.run_test(size=(140, 48)) as pilot:
        await pilot.pause()
        assert again.form.mode == "omni"
        assert again.query_one("#model", Choice).value == "kling-v3-omni"
        assert [r.source for r in again.form.references] == [cat]
        assert again.query_one("#prompt", TextArea).text == "<<<image_1>>> as a mosaic"


async def test_fields_of_other_modes_keep_their_values_across_a_restart(sandbox, tmp_path):
    # Those fields are built after the first frame: the values the draft has for them wait until then.
    app = app_for(sandbox)
    cat = png(tmp_path / "cat.png")
    async with app.run_test(size=(140, 48)) as pilot:
        app.query_one("#mode", Choice).value = "multi"
        await wait_for(pilot, lambda: app.form.deferred_ready and app.query_one("#subject-1").display)
        app.query_one("#subject-1", Input).value = cat
        app.form.set_references([Reference.of(cat)])
        app.query_one("#mode", Choice).value = "generation"
        await wait_for(pilot, lambda: load_draft().get("subject-1") == cat and load_draft().get("mode") == "generation")
    again = app_for(sandbox)
    async with again.run_test(size=(140, 48)) as pilot:
        await pilot.pause()
        assert again.form.mode == "generation"
        assert [r.source for r in again.form.references] == [cat]
        again.query_one("#mode", Choice).value = "multi"
        await wait_for(pilot, lambda: again.form.deferred_ready and again.query_one("#subject-1").display)
        assert again.query_one("#subject-1", Input).value == cat


async def test_e_on_an_omni_task_or_an_expansion_brings_back_its_inputs(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        parent = await finished_task(app, pilot, "a glass vase", model="kling-v2")
        app.table.focus()
        await pilot.press("E")
        await pilot.press(*"cracked")
        edit = await finished_task(app, pilot, app.query_one("#prompt", TextArea).text)
        app.query_one("#mode", Choice).value = "generation"
        app.query_one("#prompt", TextArea).text = "something else"
        await pilot.pause()
        app.table.focus()
        await pilot.press("e")
        assert app.form.mode == "omni" and app.query_one("#prompt", TextArea).text == "<<<image_1>>> cracked"
        assert [r.label for r in app.form.references] == [f"task {parent} image 1"]

        app.table.focus()
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExpandDialog))
        await pilot.press("5")  # 2x wider
        app.screen.query_one("#expand-prompt", Input).value = "more shelf"
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: app.table.row_count == 3)
        app.table.focus()
        await pilot.press("e")  # on the expansion: the dialog again, as it was sent
        await wait_for(pilot, lambda: isinstance(app.screen, ExpandDialog))
        await wait_for(pilot, lambda: app.screen.query_one("#side-left", Input).value == "0.5")
        assert app.screen.query_one("#expand-prompt", Input).value == "more shelf"
        assert app.screen.lineage == (edit, 1)
        await pilot.press("escape")


async def test_image_keys_on_a_task_without_images_explain_and_change_nothing(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 48)) as pilot:
        app.query_one("#prompt", TextArea).text = "a boat #fail"
        await pilot.pause()
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: app.table.row_count == 1)
        key = app.table.selected_key
        await wait_for(pilot, lambda: "failed" in cell_text(app.table, key, "status"))
        app.table.focus()
        for letter in ("R", "E", "x"):
            await pilot.press(letter)
        await pilot.pause()
        assert app.screen is app.screen_stack[0]  # no dialog opened
        assert app.form.mode == "generation" and app.form.references == []
        assert app.query_one("#prompt", TextArea).text == "a boat #fail"  # the form is kept
        messages = [n.message for n in app._notifications]
        assert sum(f"task {key} has no images (status failed)" in m for m in messages) == 3
        await pilot.press("P", "C")
        messages = [n.message for n in app._notifications]
        assert "This task was not made from another task's image." in messages
        assert "Nothing was made from this task's images yet." in messages
