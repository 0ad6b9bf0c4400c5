"""The secret key, the API key and the JWT never leave memory except in the Authorization
header: not in history, the index, logs, exception texts or reprs. The config file that
holds them is private to its owner, and a readable one is warned about."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from kling_tui.api.auth import ApiKeyAuth, Credentials, JwtAuth, auth_from
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import InvalidRequest, KlingError, NetworkError
from kling_tui.api.types import GenerationRequest
from kling_tui.base import locations
from kling_tui.config import Settings, config_permission_warning, load_settings, save_settings
from kling_tui.history.index import ACTIVE_STATUSES
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import Sandbox, SandboxConfig
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench

ACCESS_KEY = "AKtest-access-id-0001"
SECRET_KEY = "SKtest-Zq8v-secret-value-that-must-stay-hidden"
API_KEY = "APItest-Kw3r-api-key-that-must-stay-hidden"
NOW = time.time()


def jwt_auth() -> JwtAuth:
    # A fixed clock makes every signing produce the same token, so one string covers them all.
    return JwtAuth(ACCESS_KEY, SECRET_KEY, clock=lambda: NOW)


def secrets_in(text: str, *extra: str) -> list[str]:
    return [s for s in (SECRET_KEY, API_KEY, *extra) if s and s in text]


def files_with_secrets(root: Path, *extra: str, skip: Path | None = None) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path != skip:
            data = path.read_bytes()
            found += [
                f"{path.relative_to(root)}: {s[:6]}..." for s in (SECRET_KEY, API_KEY, *extra) if s.encode() in data
            ]
    return found


@pytest.fixture
def sandbox():
    config = SandboxConfig(
        submitted_seconds=0.02,
        processing_seconds=0.05,
        seed=9,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        api_key=API_KEY,
    )
    with Sandbox(config) as sb:
        yield sb


async def run_tasks(sandbox: Sandbox, auth, prompts: list[str]) -> list:
    store = HistoryStore()
    async with KlingClient(sandbox.base_url, auth, timeout=2.0, backoff=0.01, max_backoff=0.02) as client:
        tracker = Tracker(client, min_interval=0.02, max_interval=0.1)
        bench = Workbench(client, store, default_capabilities(), tracker=tracker, auto_download=True)
        errors: list[Exception] = []
        following = asyncio.create_task(bench.follow(on_error=errors.append))
        records = [await bench.submit(GenerationRequest(prompt=p)) for p in prompts]
        deadline = time.monotonic() + 10
        while store.count(status=ACTIVE_STATUSES) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        while any(len(r.image_paths) < len(r.image_urls) for r in map(store.get, [r.local_id for r in records])):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        following.cancel()
        await bench.aclose()
    store.close()
    return [*records, *errors]


async def test_no_secret_in_history_index_or_logs_after_a_full_run(sandbox, caplog, isolated_home):
    caplog.set_level(logging.DEBUG)
    auth = jwt_auth()
    token = auth.token()
    # Ambiguous creates, an expired token (re-signed), a refused prompt and a failing task.
    sandbox.state.faults.add(endpoint="create", kind="error", code=5000, times=1)
    sandbox.state.faults.add(endpoint="get", kind="error", code=1004, times=1)
    sandbox.state.faults.add(endpoint="list", kind="drop", times=1)
    results = await run_tasks(sandbox, auth, ["a lantern", "a harbour #fail", "a wall #block"])
    results += await run_tasks(sandbox, ApiKeyAuth(API_KEY), ["a kite"])

    store = HistoryStore()
    assert store.active() == []
    assert sorted(row.status for row in store.recent()) == ["failed", "not_created", "succeed", "succeed"]
    assert any(p.name.endswith(".png") for p in locations.history_dir().rglob("*")), "images were saved"
    store.close()

    assert files_with_secrets(isolated_home, token) == []
    assert "retrying" in caplog.text  # the faults were logged, so the check below is not empty
    assert secrets_in(caplog.text, token) == []
    assert all(secrets_in(f"{r!s} {r!r}", token) == [] for r in results)


async def test_authentication_and_network_errors_do_not_carry_secrets(sandbox):
    wrong = JwtAuth(ACCESS_KEY, SECRET_KEY + "-wrong", clock=lambda: NOW)
    errors: list[Exception] = []
    async with KlingClient(sandbox.base_url, wrong, max_retries=0) as client:
        with pytest.raises(KlingError) as refused:
            await client.list()
        errors.append(refused.value)
        assert refused.value.code == 1000
    async with KlingClient(sandbox.base_url, ApiKeyAuth(API_KEY + "-wrong"), max_retries=0) as client:
        with pytest.raises(KlingError) as refused_key:
            await client.get("123")
        errors.append(refused_key.value)
    sandbox.stop()  # nothing listens any more: a connection error
    async with KlingClient(sandbox.base_url, jwt_auth(), max_retries=0) as client:
        with pytest.raises(NetworkError) as unreachable:
            await client.create(GenerationRequest(prompt="x"))
        errors.append(unreachable.value)
        with pytest.raises(InvalidRequest) as invalid:
            await client.create(GenerationRequest(prompt="", n=99))
        errors.append(invalid.value)
        shown = f"{client!r} {client.auth!r}"
    tokens = [wrong.token(), jwt_auth().token()]
    for error in errors:
        assert (
            secrets_in(f"{error!s} {error!r} {error.args!r}", SECRET_KEY + "-wrong", API_KEY + "-wrong", *tokens) == []
        )
    assert secrets_in(shown, *tokens) == []


def test_reprs_never_show_keys():
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, API_KEY)
    settings = Settings(access_key=ACCESS_KEY, secret_key=SECRET_KEY, api_key=API_KEY)
    auth = jwt_auth()
    token = auth.token()
    client = KlingClient("http://127.0.0.1:9", auth)
    shown = [
        repr(credentials),
        str(credentials),
        repr(auth),
        str(auth),
        repr(ApiKeyAuth(API_KEY)),
        repr(auth_from(credentials)),
        repr(client),
        repr(settings),
        str(settings),
    ]
    for text in shown:
        assert secrets_in(text, token) == [], text
    assert "set" in repr(credentials)


def test_history_drops_credential_params(isolated_home):
    token = jwt_auth().token()
    with HistoryStore() as store:
        record = store.new_record(
            "generation",
            {"prompt": "a boat", "api_key": API_KEY, "secret_key": SECRET_KEY, "Authorization": f"Bearer {token}"},
        )
        assert record.params == {"prompt": "a boat"}
    assert files_with_secrets(isolated_home, token) == []


def test_the_config_file_is_private_and_a_readable_one_is_warned_about(isolated_home):
    path = save_settings(Settings(access_key=ACCESS_KEY, secret_key=SECRET_KEY, api_key=API_KEY))
    assert path == locations.config_file()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert config_permission_warning(path) is None
    loaded = load_settings(environ={})
    assert (loaded.secret_key, loaded.api_key, loaded.warnings) == (SECRET_KEY, API_KEY, [])

    os.chmod(path, 0o644)
    warning = config_permission_warning(path)
    assert warning and "chmod 600" in warning and secrets_in(warning) == []
    assert warning in load_settings(environ={}).warnings

    # Saving again puts the file back to 0600.
    save_settings(loaded)
    assert os.stat(path).st_mode & 0o777 == 0o600
    # Nothing but the config file itself holds a key.
    assert files_with_secrets(isolated_home, skip=path) == []


@pytest.mark.parametrize(
    "text",
    [
        f'[auth]\nsecret_key = ["{SECRET_KEY}"]\napi_key = ["{API_KEY}"]\n',
        f'[auth]\nsecret_key = "{SECRET_KEY}" trailing\n',
        f'[auth]\napi_key = "{API_KEY}\n',
    ],
    ids=["wrong-type", "bad-toml", "unterminated"],
)
def test_config_warnings_never_quote_a_key(isolated_home, text):
    path = locations.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    settings = load_settings(environ={})
    assert settings.warnings
    assert secrets_in(" ".join(settings.warnings)) == []
    assert secrets_in(repr(settings)) == []
