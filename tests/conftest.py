"""Shared fixtures: every test gets its own KLING_TUI_HOME and, on request, a live sandbox."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Never touch the developer's own config, data or credentials."""
    home = tmp_path / "home"
    monkeypatch.setenv("KLING_TUI_HOME", str(home))
    for name in ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_KEY", "KLING_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def sandbox_config():
    """Fast lifecycle for tests; tests may tweak fields before the sandbox starts."""
    from kling_tui.sandbox import SandboxConfig

    return SandboxConfig(submitted_seconds=0.05, processing_seconds=0.15, seed=1234)


@pytest.fixture
def sandbox(sandbox_config):
    """A real sandbox server on 127.0.0.1 with a free port, in a background thread."""
    from kling_tui.sandbox import Sandbox

    with Sandbox(sandbox_config) as sb:
        yield sb
