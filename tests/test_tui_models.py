"""Models that come and go, in the real app on the real sandbox: warnings, remembered retirements, re-run on the successor."""

from __future__ import annotations

import datetime as dt

from kling_tui.api.capabilities import load_capabilities
from kling_tui.config import load_settings
from kling_tui.history.retired import load_retired
from kling_tui.sandbox import Sandbox, SandboxConfig
from kling_tui.ui.choice import Choice
from kling_tui.ui.compare import CompareScreen
from tests.test_tui_iterate import app_for, rendered, status, submit
from tests.tui_helpers import sandbox_history, shown, wait_for


async def test_the_form_warns_before_sending_to_a_retired_model_and_prices_the_use(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        assert app.query_one("#model", Choice).value == "kling-v1"
        await wait_for(pilot, lambda: "estimate ≈ 1 unit ($0.0035)" in shown(app, "estimate"))
        assert shown(app, "model-warning") == ""
        app.query_one("#model", Choice).value = "kling-v2"
        await wait_for(
            pilot, lambda: "kling-v2 retired on 2026-09-15; successor: kling-v3" in shown(app, "model-warning")
        )
        await wait_for(pilot, lambda: "estimate ≈ 4 units ($0.014)" in shown(app, "estimate"))
        app.query_one("#model", Choice).value = "kling-v3"
        await wait_for(pilot, lambda: shown(app, "model-warning") == "")
        assert "estimate ≈ 8 units ($0.028)" in shown(app, "estimate")


async def test_the_form_preselects_the_first_preferred_model_that_has_not_retired(sandbox, isolated_home):
    (isolated_home / "config").mkdir(parents=True, exist_ok=True)
    (isolated_home / "config" / "config.toml").write_text('default_models = ["kling-v2", "kling-v3"]\n')
    app = app_for(sandbox, load_settings())
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        assert app.query_one("#model", Choice).value == "kling-v3"  # kling-v2 retired on 2026-09-15


async def test_a_discontinued_answer_is_remembered_and_one_key_reruns_on_the_successor():
    caps = load_capabilities({"models": {"kling-v1": {"discontinued": True}}})
    config = SandboxConfig(submitted_seconds=0.05, processing_seconds=0.15, capabilities=caps)
    with Sandbox(config) as sb:
        app = app_for(sb)
        async with app.run_test(size=(140, 40)) as pilot:
            original = await submit(app, pilot, "a lighthouse at dusk")
            await wait_for(pilot, lambda: "not created" in status(app, original))
            record = sandbox_history().get(original)
            assert "The model 'kling-v1' has been discontinued" in record.status_msg  # the server's words
            assert "kling-v1" in load_retired(sandbox=True) and load_retired(sandbox=False) == {}
            await wait_for(pilot, lambda: "kling-v1 has been discontinued" in shown(app, "model-warning"))

            app.table.focus()
            await pilot.press("S")
            await wait_for(pilot, lambda: app.table.row_count == 2, what="the re-run's row")
            rerun = app.table.selected_key
            assert rerun != original
            await wait_for(pilot, lambda: "succeed" in status(app, rerun))
            child = sandbox_history().get(rerun)
            assert (child.model, child.prompt) == ("kling-v3", "a lighthouse at dusk")
            assert child.parents == [{"local_id": original, "image": 0}]

            await pilot.press("v")  # a re-run is compared with its original at once
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            table = rendered(app.screen.query_one("#compare-params Static"))
            assert "made from" in table and "A (its original)" in table
            assert "kling-v1" in table and "kling-v3" in table
            await pilot.press("escape")

        # The next start remembers it: the form preselects the next preferred model.
        again = app_for(sb)
        async with again.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            assert again.query_one("#model", Choice).value == "kling-v3"


async def test_the_successor_key_explains_itself_on_a_model_that_has_not_retired(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        key = await submit(app, pilot, "a quiet harbour", model="kling-v3")
        await wait_for(pilot, lambda: "succeed" in status(app, key))
        app.table.focus()
        await pilot.press("S")
        await pilot.pause()
        assert app.table.row_count == 1
        assert any("kling-v3 has not retired" in str(n.message) for n in app._notifications)


def test_today_is_past_the_public_retirement_dates():
    # The warnings above name dates that have passed; this keeps the tests honest about it.
    assert dt.date.today() > dt.date(2026, 9, 15)


async def test_a_rerun_from_the_table_on_a_retired_model_warns_as_it_goes(sandbox):
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        key = await submit(app, pilot, "a brass compass", model="kling-v2")
        await wait_for(pilot, lambda: "succeed" in status(app, key))
        app.table.focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.table.row_count == 2)
        assert any("kling-v2 retired on 2026-09-15; successor: kling-v3" in n.message for n in app._notifications)
