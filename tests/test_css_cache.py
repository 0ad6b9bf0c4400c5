"""Parsed CSS kept between runs: a second start reads it back and paints the same screen;
a damaged or foreign file is ignored and written afresh."""

from __future__ import annotations

import pickle

from kling_tui.base.locations import cache_dir
from kling_tui.config import load_settings
from kling_tui.ui.app import make_app
from kling_tui.ui.css_cache import FILE_NAME
from tests.tui_helpers import wait_for


async def start_and_capture(sandbox, theme: str | None = None) -> tuple[str, bool]:
    """Start the app; returns its first frame (SVG) and whether any CSS was parsed anew."""
    app = make_app(load_settings(), sandbox=sandbox, image_protocol="halfcell", clock=lambda: 0.0, start_poller=False)
    if theme:
        app.theme = theme
    first: list[str] = []
    display = app._display

    def painted(screen, renderable) -> None:
        display(screen, renderable)
        if renderable is not None and not first:
            first.append(app.export_screenshot(title="kling-tui"))
            first.append("parsed" if app._css.dirty else "reused")

    app._display = painted
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: bool(first), what="the first frame")
        await pilot.pause()
    return first[0], first[1] == "parsed"


async def test_a_second_start_reuses_the_parsed_css_and_paints_the_same_screen(sandbox):
    first, parsed_first = await start_and_capture(sandbox)
    assert parsed_first
    assert (cache_dir() / FILE_NAME).stat().st_size > 0
    second, parsed_second = await start_and_capture(sandbox)
    assert not parsed_second, "the second start parsed CSS the file already held"
    assert second == first


async def test_a_damaged_cache_file_is_ignored_and_written_afresh(sandbox):
    await start_and_capture(sandbox)
    path = cache_dir() / FILE_NAME
    path.write_bytes(b"\x80\x05not a pickle")
    text, parsed = await start_and_capture(sandbox)
    assert parsed and "New" in text
    _stamp, rules = pickle.loads(path.read_bytes())
    assert rules, "the file was written again after the start"


async def test_rules_parsed_for_another_theme_are_not_reused(sandbox):
    dark, _ = await start_and_capture(sandbox)
    _, parsed = await start_and_capture(sandbox, theme="textual-light")
    assert parsed, "rules with another theme's colours were taken"
    # The theme chosen is kept for the next start: choose the first one again.
    again, parsed_again = await start_and_capture(sandbox, theme="textual-dark")
    assert parsed_again, "the file held the light theme's rules, yet they were taken"
    assert again == dark


async def test_rule_sets_of_css_that_has_changed_are_dropped_from_the_file(sandbox):
    await start_and_capture(sandbox)
    path = cache_dir() / FILE_NAME
    stamp, rules = pickle.loads(path.read_bytes())
    (key, data), *_ = ((k, v) for k, v in rules.items() if str(k[1][0]).endswith("app.tcss"))
    older = ("/* an earlier version */\n" + key[0], *key[1:])
    gone = (key[0], ("/nowhere/else.tcss", ""), *key[2:])
    rules[older] = rules[gone] = data
    del rules[key]  # the current CSS is parsed again: the file gets written
    path.write_bytes(pickle.dumps((stamp, rules)))
    _, parsed = await start_and_capture(sandbox)
    assert parsed
    _stamp, after = pickle.loads(path.read_bytes())
    assert key in after and older not in after and gone not in after
    assert after.keys() <= rules.keys() | {key}
