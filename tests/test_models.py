"""Models that come and go: `kling-tui models`, retirement warnings, and the sandbox's "discontinued"."""

from __future__ import annotations

import datetime as dt

import httpx

from kling_tui.api.capabilities import load_capabilities
from kling_tui.history.retired import load_retired, remember_retired
from kling_tui.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig
from tests.cli_helpers import kling

GEN = "/v1/images/generations"


def _config(home, text: str) -> None:
    folder = home / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(text, encoding="utf-8")


def test_models_prints_every_model_with_uses_prices_and_retirement():
    run = kling("models", auth="none")
    assert run.code == 0, run.stderr
    out = run.stdout
    for name in ("kling-v1", "kling-v1-5", "kling-v2", "kling-v2-new", "kling-v2-1", "kling-v3"):
        assert f"\n{name} (" in f"\n{out}"
    block = out.split("\nkling-v2 (")[1].split("\n\n")[0]
    assert "RETIRED" in block
    assert "kling-v2 retired on 2026-09-15; successor: kling-v3" in block
    assert "multi-image 16 units ($0.056)" in block and "restyle 8 units ($0.028)" in block
    assert "expansion on any model: 8 units ($0.028)" in out
    assert "1 unit = $0.0035" in out


def test_models_json_gives_status_prices_and_the_form_default():
    data = kling("models", "--json", auth="none").json()
    by_name = {m["name"]: m for m in data["models"]}
    v2 = by_name["kling-v2"]
    assert (v2["status"], v2["retires"], v2["successor"]) == ("retired", "2026-09-15", "kling-v3")
    assert {"use": "multi_image", "resolution": "1k", "units": 16.0, "usd": 0.056} in v2["prices"]
    assert by_name["kling-v3"]["status"] == "available" and by_name["kling-v3"]["warning"] is None
    assert data["uses"]["expand"] == {"units": 8.0, "usd": 0.028}
    assert (data["form_default"], data["api_default"]) == ("kling-v1", "kling-v1")
    omni = by_name["kling-v3-omni"]
    assert (omni["endpoints"], omni["can"]["series"]) == (["omni-image"], True)
    assert by_name["kling-v2"]["endpoints"] == ["generations", "multi-image2image"]


def test_a_model_retiring_within_30_days_is_announced_with_its_date(isolated_home):
    soon = dt.date.today() + dt.timedelta(days=10)
    _config(isolated_home, f'[models.kling-v3]\nretires = {soon.isoformat()}\nsuccessor = "kling-v2-1"\n')
    data = kling("models", "--json", auth="none").json()
    v3 = next(m for m in data["models"] if m["name"] == "kling-v3")
    assert v3["status"] == "retiring"
    assert v3["warning"] == f"kling-v3 retires on {soon.isoformat()} (in 10 days); successor: kling-v2-1"


def test_what_the_service_said_is_remembered_in_the_user_data_and_listed():
    message = "The model 'kling-v1' has been discontinued"
    assert remember_retired("kling-v1", message, today=dt.date(2026, 11, 29))
    assert not remember_retired("kling-v1", message)  # known already: the first day stays
    assert load_retired()["kling-v1"].since == dt.date(2026, 11, 29)
    assert load_retired(sandbox=True) == {}  # the sandbox's answers are kept apart
    data = kling("models", "--json", auth="none").json()
    v1 = next(m for m in data["models"] if m["name"] == "kling-v1")
    assert v1["status"] == "retired" and v1["service_said"]["message"] == message
    assert v1["warning"] == "kling-v1 has been discontinued (the service said so on 2026-11-29); successor: kling-v3"
    assert data["form_default"] == "kling-v3"  # the next of the preference list


def test_the_sandbox_answers_discontinued_for_a_model_past_its_date_like_the_service():
    config = SandboxConfig(submitted_seconds=0.05, processing_seconds=0.05, retire_by_date=True)
    with (
        Sandbox(config) as sb,
        httpx.Client(base_url=sb.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}) as http,
    ):
        answer = http.post(GEN, json={"prompt": "x", "model_name": "kling-v2"})
        assert answer.status_code == 404
        assert (answer.json()["code"], answer.json()["message"]) == (1203, "The model 'kling-v2' has been discontinued")
        assert http.post(GEN, json={"prompt": "x", "model_name": "kling-v3"}).json()["code"] == 0
        assert sb.state.counters()["tasks_created"] == 1


def test_the_sandbox_retires_a_model_when_its_clock_reaches_the_date():
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date()
    caps = load_capabilities({"models": {"kling-v3": {"retires": tomorrow.isoformat()}}})
    config = SandboxConfig(retire_by_date=True, capabilities=caps)
    with (
        Sandbox(config) as sb,
        httpx.Client(base_url=sb.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}) as http,
    ):
        assert http.post(GEN, json={"prompt": "x", "model_name": "kling-v3"}).json()["code"] == 0
        sb.state.clock.advance(2 * 86400)
        refused = http.post(GEN, json={"prompt": "x", "model_name": "kling-v3"}).json()
        assert (refused["code"], refused["message"]) == (1203, "The model 'kling-v3' has been discontinued")


def test_without_retire_by_date_the_sandbox_serves_the_spec_models():
    with (
        Sandbox(SandboxConfig()) as sb,
        httpx.Client(base_url=sb.base_url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}) as http,
    ):
        assert http.post(GEN, json={"prompt": "x", "model_name": "kling-v2"}).json()["code"] == 0


def test_generate_warns_about_a_retired_model_and_gives_its_estimate_which_the_server_then_deducts(sandbox):
    run = kling("generate", "a paper boat", "--model", "kling-v2", "--n", "2", "--wait", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    assert "warning: kling-v2 retired on 2026-09-15; successor: kling-v3" in run.stderr
    task = run.json()
    assert task["estimate"] == {
        "units": 8.0,
        "usd": 0.028,
        "model": "kling-v2",
        "use": "text_to_image",
        "resolution": "1k",
        "images": 2,
        "is_estimate": True,
    }
    assert float(task["units"]) == task["estimate"]["units"]  # the server's deduction, the truth


def test_generate_on_a_model_in_service_says_nothing_about_retirement(sandbox):
    run = kling("generate", "a paper boat", "--model", "kling-v3", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    assert run.stderr == ""
    assert run.json()["estimate"]["units"] == 8.0


def test_a_discontinued_answer_is_shown_verbatim_remembered_and_the_next_default_is_the_successor():
    caps = load_capabilities({"models": {"kling-v1": {"discontinued": True}}})
    with Sandbox(SandboxConfig(submitted_seconds=0.05, processing_seconds=0.05, capabilities=caps)) as sb:
        refused = kling("generate", "a paper boat", "--json", sandbox=sb)
        assert refused.code == 3
        assert "The model 'kling-v1' has been discontinued" in refused.stderr
        assert "--model kling-v3" in refused.stderr
        assert refused.json()["error"]["code"] == 1203
        assert "kling-v1" in load_retired()

        again = kling("generate", "a paper boat", "--wait", "--json", sandbox=sb)
        assert again.code == 0, again.stderr
        assert again.json()["model"] == "kling-v3"
        assert "kling-v1" not in again.stderr  # nothing sent to it, nothing to warn about


def test_bad_lifecycle_and_price_settings_are_named_and_ignored(isolated_home):
    from kling_tui.config import load_settings

    _config(
        isolated_home,
        'default_models = ["kling-v3", 7]\n'
        "[models.kling-v3]\n"
        'retires = "next spring"\n'
        "prices = { text_to_image = 0.01, sparkle = 1 }\n",
    )
    settings = load_settings()
    assert any(w.startswith("default_models must be a list of model names") for w in settings.warnings)
    assert any("[models.kling-v3] retires has the wrong type (got 'next spring')" in w for w in settings.warnings)
    assert any("[models.kling-v3] prices has the wrong type" in w for w in settings.warnings)
    v3 = settings.capabilities().get("kling-v3")
    assert v3.retires is None and v3.prices["default"] == 0.028  # the packaged values hold
