"""The unit budget: a submit that would pass the daily or session budget asks first (TUI) or is refused (CLI)."""

from __future__ import annotations

from textual.widgets import Static

from kling_tui.config import load_settings
from kling_tui.ui.dialogs import ConfirmDialog
from tests.cli_helpers import kling
from tests.test_tui_iterate import app_for, status, submit
from tests.tui_helpers import wait_for


def _config(home, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text(text, encoding="utf-8")


def test_budgets_are_read_from_the_config_and_bad_ones_are_named(isolated_home):
    _config(isolated_home, "[budget]\ndaily = 200\nsession = 0\n")
    settings = load_settings()
    assert (settings.budget_daily, settings.budget_session) == (200.0, None)
    assert any("[budget] session must be a positive number of units (got 0)" in w for w in settings.warnings)


def test_generate_refuses_past_the_daily_budget_with_the_figures_unless_yes(sandbox, isolated_home):
    _config(isolated_home, "[budget]\ndaily = 10\n")
    first = kling("generate", "a kite", "--model", "kling-v3", "--wait", "--json", sandbox=sandbox)
    assert first.code == 0, first.stderr
    refused = kling("generate", "a kite", "--model", "kling-v3", "--json", sandbox=sandbox)
    assert refused.code == 2
    assert "the daily budget is 10 units: 8 spent today + about 8 for this submit = 16" in refused.stderr
    assert "--yes" in refused.stderr
    assert sandbox.state.counters()["tasks_created"] == 1  # nothing was sent
    anyway = kling("generate", "a kite", "--model", "kling-v3", "--yes", "--json", sandbox=sandbox)
    assert anyway.code == 0, anyway.stderr
    assert sandbox.state.counters()["tasks_created"] == 2


def test_generate_refuses_a_submit_larger_than_the_session_budget(sandbox, isolated_home):
    _config(isolated_home, "[budget]\nsession = 5\n")
    refused = kling("generate", "a kite", "--model", "kling-v3", sandbox=sandbox)
    assert refused.code == 2
    assert "the session budget is 5 units: 0 spent this session + about 8 for this submit = 8" in refused.stderr
    cheap = kling("generate", "a kite", "--model", "kling-v1", "--n", "4", sandbox=sandbox)
    assert cheap.code == 0, cheap.stderr  # 4 units fit


async def test_the_app_asks_before_a_submit_past_the_session_budget(sandbox, isolated_home):
    _config(isolated_home, "[budget]\nsession = 10\n")
    app = app_for(sandbox, load_settings())
    async with app.run_test(size=(140, 40)) as pilot:
        first = await submit(app, pilot, "a kite", model="kling-v3")
        await wait_for(pilot, lambda: "succeed" in status(app, first))
        app.form.focus_prompt()
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        question = str(app.screen.query_one(".title", Static).render())
        assert "Over budget: the session budget is 10 units: 8 spent this session + about 8" in question
        await pilot.press("n")
        await pilot.pause()
        assert app.table.row_count == 1  # declined: nothing recorded, nothing sent
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.table.row_count == 2)
        assert sandbox.state.counters()["tasks_created"] == 2
