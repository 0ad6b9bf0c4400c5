"""The full-screen viewer, the grid and importing an image, driven by keys in the real app."""

from __future__ import annotations

import os

import pytest
from PIL import Image
from textual.widgets import Input, TextArea

from kling_tui.config import load_settings
from kling_tui.history.metadata import embed_parameters
from kling_tui.history.thumbs import thumbnail_path
from kling_tui.sandbox.render import render_png
from kling_tui.ui.app import make_app
from kling_tui.ui.grid import GridScreen, grid_shape
from kling_tui.ui.viewer import ViewerScreen, view_box
from tests.tui_helpers import sandbox_history, wait_for


def app_for(sandbox, **kwargs):
    kwargs.setdefault("image_protocol", "halfcell")
    kwargs.setdefault("poll_interval", 0.05)
    return make_app(load_settings(), sandbox=sandbox, **kwargs)


def finished(store, prompt, images, *, model="kling-v1", ratio="16:9", group=None, size=(320, 180), at=None):
    record = store.new_record("generation", {"prompt": prompt, "model_name": model, "aspect_ratio": ratio, "n": images})
    folder = store.task_dir(record.local_id)
    names = []
    for i in range(images):
        (folder / f"image-{i + 1}.png").write_bytes(render_png(f"{prompt} {i}", i, *size))
        names.append(f"image-{i + 1}.png")
    return store.update(
        record.local_id,
        status="succeed",
        image_paths=names,
        image_urls=[f"https://cdn.example/{record.local_id}/{i}.png" for i in range(images)],
        group=group,
        units="1",
        created_at=at or record.created_at,
    )


def history():
    """Newest first in the table: four-up, variant b, variant a, a failed task."""
    store = sandbox_history()
    failed = store.new_record("generation", {"prompt": "a storm", "n": 1})
    store.update(failed.local_id, status="failed", status_msg="no")
    a = finished(store, "a red fox", 2, model="kling-v1", group="g1")
    b = finished(store, "a red fox", 1, model="kling-v2", group="g1")
    four = finished(store, "four owls", 4, size=(640, 360))
    store.close()
    return {"failed": failed.local_id, "a": a.local_id, "b": b.local_id, "four": four.local_id}


def test_grid_shapes_and_view_boxes():
    assert [grid_shape(n) for n in (1, 2, 4, 5, 9)] == [(1, 1), (2, 1), (2, 2), (3, 2), (3, 3)]
    assert view_box((1000, 500), (200, 100), "fit", (0.5, 0.5)) is None
    assert view_box((1000, 500), (200, 100), "1:1", (0.5, 0.5)) == (400, 200, 600, 300)
    assert view_box((1000, 500), (200, 100), "zoom", (0.5, 0.5)) == (450, 225, 550, 275)
    assert view_box((1000, 500), (200, 100), "1:1", (0.0, 1.0)) == (0, 400, 200, 500)  # kept inside
    assert view_box((100, 50), (200, 100), "1:1", (0.5, 0.5)) == (0, 0, 100, 50)  # smaller than the area


async def test_full_screen_viewer_keys_and_escape_back_to_where_the_user_was(sandbox):
    ids = history()
    app = app_for(sandbox)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 4)
        app.table.focus()
        app.table.move_cursor(row=0)  # four owls
        await wait_for(pilot, lambda: app.preview.shown is not None)
        app.preview.focus()
        await pilot.press("l")  # the preview's second image
        await wait_for(pilot, lambda: app.preview.index == 1)
        app.table.focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen))
        viewer = app.screen
        await wait_for(pilot, lambda: viewer.shown == (ids["four"], 1, "fit", None), what="image 2, fitted")
        bar = str(viewer.query_one("#viewer-info").render()) + str(viewer.query_one("#viewer-prompt").render())
        assert "2/4" in bar and "task 1/4" in bar and "four owls" in bar and "kling-v1" in bar

        await pilot.press("right")
        await wait_for(pilot, lambda: viewer.shown and viewer.shown[1] == 2)
        await pilot.press("left", "left", "left")
        await wait_for(pilot, lambda: viewer.shown and viewer.shown[1] == 3, what="wrapped to the last image")

        await pilot.press("z")
        await wait_for(pilot, lambda: viewer.shown and viewer.shown[2] == "1:1")
        left, top, right, bottom = viewer.shown[3]
        body = viewer.query_one("#viewer-body").size
        assert (right - left, bottom - top) == (min(640, body.width), min(360, body.height * 2))  # a pixel a half-cell
        await pilot.press("z")
        await wait_for(pilot, lambda: viewer.shown and viewer.shown[2] == "zoom")
        zoomed = viewer.shown[3]
        assert zoomed[2] - zoomed[0] == (right - left) // 2
        await pilot.press("shift+right")
        await wait_for(pilot, lambda: viewer.shown[3][0] > zoomed[0], what="panned right")
        await pilot.press("shift+down")
        await wait_for(pilot, lambda: viewer.shown[3][1] > zoomed[1], what="panned down")
        moved = viewer.shown[3]
        await pilot.press("H")
        await wait_for(pilot, lambda: viewer.shown[3][0] < moved[0], what="panned left")
        await pilot.press("K")
        await wait_for(pilot, lambda: viewer.shown[3][1] < moved[1], what="panned up")
        await pilot.press("z")
        await wait_for(pilot, lambda: viewer.shown and viewer.shown[2] == "fit")

        await pilot.press("down")  # the next task in the table's order
        await wait_for(pilot, lambda: viewer.shown and viewer.shown[0] == ids["b"])
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: viewer.shown is None)  # the failed task has none
        assert "No saved images" in str(viewer.query_one("#viewer-message").render())
        await pilot.press("down")  # stays on the last task
        await pilot.press("up")
        await wait_for(pilot, lambda: viewer.shown and viewer.shown[0] == ids["a"])

        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ViewerScreen))
        assert app.table.cursor_row == 0 and app.focused is app.table and app.preview.index == 1

        app.preview.focus()
        await pilot.press("enter")  # from the preview too
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen) and app.screen.shown is not None)
        assert app.screen.shown[:2] == (ids["four"], 1)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.focused is app.preview)


async def test_grid_of_a_task_and_of_a_variant_group_with_the_table_keys(sandbox, tmp_path, monkeypatch):
    ids = history()
    # A stand-in for the system viewer that notes what it was asked to open.
    opened = tmp_path / "opened.txt"
    (tmp_path / "bin").mkdir()
    opener = tmp_path / "bin" / "xdg-open"
    opener.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    opener.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 4 and app.workbench is not None)
        app.table.focus()
        app.table.move_cursor(row=0)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen))
        grid = app.screen
        assert (grid.columns, grid.rows) == (2, 2)
        await wait_for(pilot, lambda: grid.drawn == {0, 1, 2, 3}, what="four thumbnails")
        folder = sandbox_history().task_dir(ids["four"])
        assert all(thumbnail_path(folder / f"image-{i}.png", 256).is_file() for i in range(1, 5))

        await pilot.press("right", "down")
        assert grid.cursor == 3 and grid.current.label == "image 4/4"
        await pilot.press("right")  # at the edge: stays
        assert grid.cursor == 3
        await pilot.press("p")
        assert app.clipboard == str(folder / "image-4.png")
        await pilot.press("y")
        assert app.clipboard == f"https://cdn.example/{ids['four']}/3.png"
        await pilot.press("c")
        assert app.clipboard == "four owls"
        await pilot.press("o")
        await wait_for(pilot, lambda: opened.exists() and opened.read_text().strip() == str(folder / "image-4.png"))
        await pilot.press("f")
        await wait_for(pilot, lambda: sandbox_history().get(ids["four"]).starred)
        assert grid.current.label.startswith("★")
        await pilot.press("R")  # as in the table: an Omni reference that keeps its lineage
        assert [(r.source, r.parent) for r in app.form.references] == [(str(folder / "image-4.png"), (ids["four"], 4))]

        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen) and app.screen.shown is not None)
        assert app.screen.shown[:2] == (ids["four"], 3)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is grid)
        assert grid.cursor == 3  # the same cell keeps the highlight
        await pilot.press("left", "up")
        assert grid.cursor == 0
        await pilot.press("space")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen) and app.screen.shown is not None)
        assert app.screen.shown[:2] == (ids["four"], 0)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.screen is grid)

        before = app.table.row_count
        await pilot.press("r")
        await wait_for(pilot, lambda: app.table.row_count == before + 1, what="the re-run task")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, GridScreen))

        # A task of a variant group: every member's images, labelled with what differs.
        key_a = ids["a"]
        app.table.move_cursor(row=app.table.get_row_index(key_a))
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen))
        grid = app.screen
        labels = [item.label for item in grid.items]
        assert labels == ["kling-v2 · n=1", "kling-v1 · n=2 · #1", "kling-v1 · n=2 · #2"]
        await wait_for(pilot, lambda: len(grid.drawn) == 3)
        await pilot.press("escape")


async def test_importing_an_image_fills_the_form_or_sets_a_reference(sandbox, tmp_path):
    store = sandbox_history()
    made = finished(store, "a teal [bold]boat[/bold]", 1, model="kling-v1-5", ratio="1:1")
    image = store.task_dir(made.local_id) / "image-1.png"
    made.params["negative_prompt"] = "rain"
    embed_parameters(image, made, 0)
    # Made from a reference image: kept by name, found again beside the image.
    with_ref = finished(store, "the boat again", 1, model="kling-v1-5", ratio="1:1")
    ref_image = store.task_dir(with_ref.local_id) / "image-1.png"
    Image.new("RGB", (400, 400), "navy").save(tmp_path / "ref.png")
    with_ref.params["image"] = str(tmp_path / "ref.png")
    embed_parameters(ref_image, with_ref, 0)
    store.close()
    foreign = tmp_path / "photo.png"
    Image.new("RGB", (400, 400), "white").save(foreign)

    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        app.table.focus()
        await pilot.press("i")
        await wait_for(pilot, lambda: app.screen.query("#text"))
        app.screen.query_one("#text", Input).value = str(image)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one("#prompt", TextArea).text == "a teal [bold]boat[/bold]")
        assert app.form.values()["model"] == "kling-v1-5" and app.query_one("#negative", Input).value == "rain"

        (ref_image.parent / "ref.png").write_bytes((tmp_path / "ref.png").read_bytes())
        app.table.focus()
        await pilot.press("i")
        await wait_for(pilot, lambda: app.screen.query("#text"))
        app.screen.query_one("#text", Input).value = str(ref_image)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one("#prompt", TextArea).text == "the boat again")
        assert app.query_one("#image", Input).value == str(ref_image.parent / "ref.png")
        app.query_one("#image", Input).value = ""

        app.table.focus()
        await pilot.press("i")
        await wait_for(pilot, lambda: app.screen.query("#text"))
        app.screen.query_one("#text", Input).value = str(foreign)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one("#image", Input).value == str(foreign))

        app.table.focus()
        await pilot.press("i")
        await wait_for(pilot, lambda: app.screen.query("#text"))
        app.screen.query_one("#text", Input).value = str(tmp_path / "missing.png")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("no such file" in str(n.message) for n in app._notifications))
        assert app.is_running


async def test_a_narrow_terminal_shows_the_form_and_the_tasks_in_turn(sandbox):
    ids = history()
    app = app_for(sandbox)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 4)
        form, right = app.query_one("#form-pane"), app.query_one("#right")
        assert app.narrow and app.focused is app.table
        assert not form.display or form.region.width == 0
        assert right.region.width == 80
        # The prompt column starts inside the table's visible width.
        columns = app.table.ordered_columns
        assert sum(c.get_render_width(app.table) for c in columns[:-1]) + 8 <= app.table.scrollable_content_region.width
        assert "four owls" in str(app.table.get_cell(ids["four"], "prompt"))

        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.focused, TextArea) and form.region.width == 80)
        assert right.region.width == 0
        await pilot.press("f6")
        await wait_for(pilot, lambda: app.focused is app.table and right.region.width == 80)
        await pilot.press("f2")
        await wait_for(pilot, lambda: form.region.width == 80)
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.focused is app.preview and right.region.width == 80)

        await pilot.resize_terminal(120, 36)
        await wait_for(pilot, lambda: not app.narrow and form.region.width > 0 and right.region.width > 0)


async def test_prompts_in_the_grid_and_viewer_are_text_never_markup(sandbox):
    hostile = "[bold]loud[/bold] [@click=app.quit]quit[/] \x1b[31m"
    store = sandbox_history()
    finished(store, hostile, 1, model="kling-v1", group="g2")
    finished(store, "calm", 1, model="kling-v1", group="g2")
    store.close()
    app = app_for(sandbox)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 2)
        app.table.focus()
        app.table.move_cursor(row=1)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen))
        label = str(app.screen.query_one("#cell-1 .grid-label").render())
        assert "[bold]loud[/bold] [@click=app.quit]" in label and "\x1b" not in label
        await pilot.press("right", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen))
        await wait_for(pilot, lambda: "loud" in str(app.screen.query_one("#viewer-prompt").render()))
        shown = str(app.screen.query_one("#viewer-prompt").render())
        assert "[bold]loud[/bold] [@click=app.quit]quit[/]" in shown and "\x1b" not in shown
        assert app.is_running


@pytest.mark.parametrize("protocol", ["sixel", "kitty", "unicode", "none"])
async def test_viewer_and_grid_work_with_every_image_protocol(sandbox, protocol):
    ids = history()
    app = app_for(sandbox, image_protocol=protocol)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 4)
        app.table.focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen) and app.screen.shown is not None)
        assert app.screen.shown[:2] == (ids["four"], 0)
        if protocol == "none":
            assert "image-1.png" in str(app.screen.query_one("#viewer-message").render())
        await pilot.press("z", "escape", "t")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen))
        grid = app.screen
        if protocol == "none":
            await wait_for(pilot, lambda: "image-4.png" in str(grid.query_one("#cell-3 .grid-wait").render()))
        else:
            await wait_for(pilot, lambda: grid.drawn == {0, 1, 2, 3})
        await pilot.press("escape")
        assert app.is_running
