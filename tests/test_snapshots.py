"""SVG snapshots of the main screens: halfcell images, a fixed clock, a fixed terminal size.

Update on purpose with `pytest tests/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import time

import pytest
from pytest_textual_snapshot import SVGImageExtension

from benchmarks.fixtures import populate
from kling_tui.config import load_settings
from kling_tui.sandbox.render import output_size, render_png
from kling_tui.ui.app import make_app
from tests.tui_helpers import sandbox_history, wait_for

# 2026-11-20 10:00:00 UTC: every time on screen is derived from it.
FIXED_NOW = 1795168800.0


@pytest.fixture(autouse=True)
def steady_cursor(monkeypatch):
    """A blinking cursor is drawn or not by when the frame is taken (on a busy machine, late
    enough to be in its off half-second): hold it on."""
    from textual.widgets import Input, TextArea

    monkeypatch.setattr(TextArea, "_toggle_cursor_blink_visible", lambda self: None)
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)


@pytest.fixture
def fixed_zone(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def history(fixed_zone):
    """Twelve finished tasks; the newest has a real image on disk."""
    store = sandbox_history()
    ids = populate(store, 12, seed=7, end=FIXED_NOW)
    newest = store.get(ids[-1])
    folder = store.task_dir(newest.local_id)
    width, height = output_size("16:9", "1k")
    (folder / "image-1.png").write_bytes(render_png("a lighthouse on a cliff at dusk", 0, width, height))
    store.update(
        newest.local_id,
        status="succeed",
        params={**newest.params, "prompt": "a lighthouse on a cliff at dusk", "n": 1, "aspect_ratio": "16:9"},
        image_paths=["image-1.png"],
        image_urls=["https://cdn.example/lighthouse.png"],
    )
    store.close()
    return ids


def build(sandbox=None, **kwargs):
    return make_app(
        load_settings(),
        sandbox=sandbox,
        image_protocol="halfcell",
        clock=lambda: FIXED_NOW,
        start_poller=False,
        **kwargs,
    )


def test_main_screen_with_history(snap_compare, sandbox, history):
    app = build(sandbox)

    async def ready(pilot):
        await wait_for(pilot, lambda: app.preview.shown is not None, what="the preview")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)


async def test_the_first_frame_is_the_whole_app(snapshot, sandbox, history):
    """What start-up measures: the first frame painted is already the form, the table with the
    history and the preview pane (the fields built later are hidden ones; the checks and the
    estimate line, the footer's keys and the header's connection follow within milliseconds)."""
    app = build(sandbox)
    first: list[str] = []
    display = app._display

    def painted(screen, renderable) -> None:
        display(screen, renderable)
        if renderable is not None and not first:
            first.append(app.export_screenshot(title="kling-tui"))

    app._display = painted
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: bool(first), what="the first frame")
    svg = first[0]
    for visible in ("New task", "Prompt", "Model", "Variants", "Tasks (12)", "a lighthouse o", "Preview"):
        assert visible.replace(" ", "&#160;") in svg or visible in svg, visible
    assert svg == snapshot(extension_class=SVGImageExtension)


def test_main_screen_small_terminal(snap_compare, sandbox, history):
    app = build(sandbox)

    async def ready(pilot):
        await wait_for(pilot, lambda: app.preview.shown is not None, what="the preview")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_form_shows_rules_inline(snap_compare, sandbox, fixed_zone):
    app = build(sandbox)

    async def ready(pilot):
        from textual.widgets import Input

        from kling_tui.ui.choice import Choice

        app.query_one("#model", Choice).value = "kling-v2-new"
        app.query_one("#n", Input).value = "12"
        await pilot.pause()
        await wait_for(pilot, lambda: "n: must be" in str(app.query_one("#problems").render()))

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)


def test_help_screen(snap_compare, sandbox, fixed_zone):
    app = build(sandbox)

    async def ready(pilot):
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)


def test_a_choice_lists_its_options_over_the_form(snap_compare, sandbox, fixed_zone):
    from kling_tui.ui.choice import Choice, ChoiceMenu

    app = build(sandbox)

    async def open_models(pilot):
        app.query_one("#model", Choice).focus()
        await pilot.press("enter", "down")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceMenu))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=open_models)


def test_setup_screen_on_first_run(snap_compare, fixed_zone):
    app = build(None)
    assert snap_compare(app, terminal_size=(120, 36))


@pytest.fixture
def four_up(fixed_zone):
    """One task with four images on disk, and a variant group of two with one each."""
    store = sandbox_history()
    populate(store, 3, seed=7, end=FIXED_NOW - 600)
    width, height = output_size("16:9", "1k")

    def finished(prompt, n, model, group=None, at=FIXED_NOW):
        record = store.new_record("generation", {"prompt": prompt, "model_name": model, "aspect_ratio": "16:9", "n": n})
        folder = store.task_dir(record.local_id)
        for i in range(n):
            (folder / f"image-{i + 1}.png").write_bytes(render_png(f"{prompt} {i}", i, width // 4, height // 4))
        return store.update(
            record.local_id,
            status="succeed",
            image_paths=[f"image-{i + 1}.png" for i in range(n)],
            group=group,
            units=str(n),
            created_at=at,
            submitted_at=at,
            finished_at=at + 20,
        ).local_id

    finished("a fox in the snow", 1, "kling-v1", group="abcd1234", at=FIXED_NOW - 120)
    finished("a fox in the snow", 1, "kling-v2", group="abcd1234", at=FIXED_NOW - 60)
    four = finished("four lighthouses at dusk, one per season", 4, "kling-v2-1")
    store.close()
    return four


def test_grid_of_four(snap_compare, sandbox, four_up):
    app = build(sandbox)

    async def ready(pilot):
        from kling_tui.ui.grid import GridScreen

        await wait_for(pilot, lambda: app.table.row_count >= 3 and app.table.selected_key == four_up)
        app.table.focus()
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen) and len(app.screen.drawn) == 4)
        await pilot.press("right")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=ready)


def test_grid_of_a_variant_group(snap_compare, sandbox, four_up):
    app = build(sandbox)

    async def ready(pilot):
        from kling_tui.ui.grid import GridScreen

        await wait_for(pilot, lambda: app.table.row_count >= 3)
        app.table.focus()
        await pilot.press("j")
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen) and len(app.screen.drawn) == 2)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=ready)


def test_full_screen_view(snap_compare, sandbox, four_up):
    app = build(sandbox)

    async def ready(pilot):
        from kling_tui.ui.viewer import ViewerScreen

        await wait_for(pilot, lambda: app.table.row_count >= 3 and app.table.selected_key == four_up)
        app.table.focus()
        await pilot.press("space", "right")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewerScreen) and app.screen.shown is not None)
        await wait_for(pilot, lambda: app.screen.shown[1] == 1)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=ready)


def test_form_in_omni_mode_with_two_references(snap_compare, sandbox, fixed_zone, tmp_path):
    from PIL import Image

    from kling_tui.ui.references import Reference

    app = build(sandbox)
    cat, sofa = tmp_path / "cat.png", tmp_path / "sofa.jpg"
    Image.new("RGB", (640, 480), (200, 90, 40)).save(cat)
    Image.new("RGB", (800, 600), (20, 60, 200)).save(sofa)

    async def ready(pilot):
        from kling_tui.ui.choice import Choice

        app.query_one("#mode", Choice).value = "omni"
        await pilot.pause()
        app.form.set_references([Reference.of(str(cat)), Reference.of_task(str(sofa), "20261120-093000-0a1b2c3d", 2)])
        app.form.set_prompt("the cat from <<<image_1>>> asleep on the sofa in <<<image_2>>>, watercolour")
        await wait_for(pilot, lambda: "kling-image-o1" in str(app.query_one("#estimate").render()))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)


def test_form_with_a_template_and_its_values(snap_compare, sandbox, fixed_zone):
    app = build(sandbox)

    async def ready(pilot):
        from textual.widgets import Input

        app.form.set_prompt("a {red|blue} {{animal}} at {{time}}, watercolour")
        await wait_for(pilot, lambda: app.query("#var-time"), what="the values table")
        app.query_one("#var-animal", Input).value = "fox, owl, cat"
        app.query_one("#var-time", Input).value = "dawn, dusk"
        await wait_for(pilot, lambda: str(app.query_one("#estimate").render()).startswith("12 tasks"))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 64), run_before=ready)
