"""Settings: the config file, the environment over it, safe saving and tolerant loading."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import replace

import pytest

from kling_tui.base import locations
from kling_tui.config import REGIONS, Settings, config_permission_warning, load_settings, save_settings

SECRET = "sk-VERY-SECRET-value"


def _write_config(text: str, mode: int = 0o600):
    path = locations.config_file()
    path.write_text(text)
    path.chmod(mode)
    return path


def test_defaults_without_a_file():
    s = load_settings()
    assert s.warnings == []
    assert s.base_url == REGIONS["singapore"] == "https://api-singapore.klingai.com"
    assert not s.has_credentials and s.auth_scheme is None
    assert (s.image_protocol, s.concurrency, s.sandbox) == ("auto", 9, False)
    assert s.capabilities().default_model == "kling-v1"


def test_every_section_is_read():
    _write_config(
        f"""
default_model = "kling-v1-5"
[auth]
access_key = "AK123"
secret_key = "{SECRET}"
[api]
region = "beijing"
sandbox = true
[ui]
theme = "nord"
image_protocol = "halfcell"
poll_interval = 3
[queue]
concurrency = 5
[keymap]
submit = "alt+enter"
"""
    )
    s = load_settings()
    assert s.warnings == []
    assert s.has_credentials and s.auth_scheme == "ak_sk" and s.credential_source == "file"
    assert s.base_url == "https://api-beijing.klingai.com"
    assert (s.sandbox, s.theme, s.image_protocol, s.poll_interval, s.concurrency) == (True, "nord", "halfcell", 3.0, 5)
    assert s.keymap == {"submit": "alt+enter"}
    assert s.capabilities().default_model == "kling-v1-5"


def test_custom_base_url_wins_over_region():
    _write_config('[api]\nregion = "beijing"\nbase_url = "http://127.0.0.1:8123/"\n')
    assert load_settings().base_url == "http://127.0.0.1:8123"
    _write_config('[api]\nregion = "custom"\n')
    s = load_settings()
    assert s.base_url == REGIONS["singapore"]
    assert any("custom" in w for w in s.warnings)


def test_environment_overrides_the_file(monkeypatch):
    _write_config(
        f'[auth]\napi_key = "file-key"\naccess_key = "AKfile"\nsecret_key = "{SECRET}"\n[api]\nregion = "beijing"\n'
    )
    monkeypatch.setenv("KLING_ACCESS_KEY", "AKenv")
    monkeypatch.setenv("KLING_SECRET_KEY", "SKenv")
    monkeypatch.setenv("KLING_API_KEY", "env-key")
    monkeypatch.setenv("KLING_BASE_URL", "http://127.0.0.1:9999")
    s = load_settings()
    assert (s.access_key, s.secret_key, s.api_key) == ("AKenv", "SKenv", "env-key")
    assert s.base_url == "http://127.0.0.1:9999"
    assert s.credential_source == "environment"


def test_half_a_key_pair_in_the_environment_is_ignored_with_a_warning(monkeypatch):
    monkeypatch.setenv("KLING_ACCESS_KEY", "AKenv")
    s = load_settings()
    assert not s.has_credentials
    assert any("KLING_SECRET_KEY" in w for w in s.warnings)


def test_save_writes_0600_atomically_and_reads_back():
    s = Settings(api_key=SECRET, region="beijing", theme="nord", concurrency=5, keymap={"submit": "ctrl+j"})
    s.models = {"my-model": {"label": "Mine", "units_per_image": 2.0}}
    path = save_settings(s)
    assert path == locations.config_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]
    back = load_settings()
    assert back.warnings == []
    assert back == replace(s, credential_source="file", path=path)
    assert config_permission_warning(path) is None


def test_save_is_0600_even_with_a_permissive_umask():
    old = os.umask(0)
    try:
        path = save_settings(Settings(api_key=SECRET))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_does_not_copy_environment_credentials_into_the_file(monkeypatch):
    _write_config('[auth]\napi_key = "file-key"\n')
    monkeypatch.setenv("KLING_API_KEY", "env-key")
    s = load_settings()
    s.theme = "nord"
    save_settings(s)
    data = tomllib.loads(locations.config_file().read_text())
    assert data["auth"]["api_key"] == "file-key"
    assert data["ui"]["theme"] == "nord"


def test_secrets_never_in_repr_or_warnings():
    _write_config(f'[auth]\nsecret_key = 12\napi_key = "{SECRET}"\naccess_key = "AK"\n[ui]\ntheme = 3\n', mode=0o644)
    s = load_settings()
    assert SECRET not in repr(s)
    assert "api_key" not in repr(s)
    assert any("secret_key" in w for w in s.warnings)
    assert any("theme" in w and "3" in w for w in s.warnings)
    assert not any("12" in w for w in s.warnings if "secret_key" in w)
    assert all(SECRET not in w for w in s.warnings)


def test_permission_warning_for_a_group_or_world_readable_file():
    path = _write_config('[ui]\ntheme = "nord"\n', mode=0o644)
    warning = config_permission_warning(path)
    assert warning is not None and "chmod 600" in warning
    assert warning in load_settings().warnings
    path.chmod(0o600)
    assert config_permission_warning(path) is None
    assert load_settings().warnings == []


def test_damaged_file_is_moved_aside_and_the_app_still_starts():
    _write_config(f'[auth]\napi_key = "{SECRET}"\n[ui\ntheme = ')
    s = load_settings()
    assert s.theme == "textual-dark" and not s.has_credentials
    assert len(s.warnings) == 1 and "moved it to config.toml.damaged-" in s.warnings[0]
    assert SECRET not in s.warnings[0]
    assert not locations.config_file().exists()
    assert len(list(locations.config_dir().glob("config.toml.damaged-*"))) == 1


def test_bad_values_fall_back_to_defaults_with_warnings():
    _write_config(
        '[api]\nregion = "mars"\n[ui]\nimage_protocol = "vt340"\npoll_interval = 0\n'
        "[queue]\nconcurrency = 0\n[keymap]\nsubmit = 5\n[colours]\nx = 1\n"
    )
    s = load_settings()
    assert (s.region, s.image_protocol, s.poll_interval, s.concurrency, s.keymap) == ("singapore", "auto", 2.0, 9, {})
    text = "\n".join(s.warnings)
    for word in ("region", "image_protocol", "poll_interval", "concurrency", "submit", "colours"):
        assert word in text


def test_unknown_settings_survive_a_save():
    _write_config('[colours]\naccent = "red"\n[ui]\nfuture_option = true\n')
    s = load_settings()
    save_settings(s)
    data = tomllib.loads(locations.config_file().read_text())
    assert data["colours"] == {"accent": "red"}
    assert data["ui"]["future_option"] is True


def test_model_overrides_reach_capabilities():
    _write_config(
        'default_model = "house-model"\n'
        '[models.house-model]\nlabel = "House"\nmulti_image = true\naspect_ratios = ["1:1"]\nunits_per_image = 3\n'
        "[models.kling-v1]\nunits_per_image = 5.5\nbogus = 1\n"
    )
    s = load_settings()
    caps = s.capabilities()
    assert caps.default_model == "house-model"
    house = caps.get("house-model")
    assert (house.label, house.multi_image, house.aspect_ratios) == ("House", True, ("1:1",))
    assert house.units(2) == 6.0
    v1 = caps.get("kling-v1")
    assert v1.units_per_image == 5.5 and v1.label == "Kling v1"
    assert any("bogus" in w for w in s.warnings)


@pytest.mark.parametrize("field_value", ['multi_image = "yes"', 'aspect_ratios = "1:1"', "units_per_image = -1"])
def test_badly_typed_model_fields_are_ignored(field_value):
    _write_config(f"[models.kling-v1]\n{field_value}\n")
    s = load_settings()
    assert s.capabilities().get("kling-v1").units_per_image == 1.0
    assert len(s.warnings) == 1


def test_a_model_from_the_config_can_serve_the_omni_endpoint():
    _write_config('[models.house-omni]\nendpoints = ["omni-image"]\nseries = true\naspect_ratios = ["auto"]\n')
    caps = load_settings().capabilities()
    assert caps.models_for("omni-image") == ["kling-image-o1", "kling-v3-omni", "house-omni"]
    assert caps.get("house-omni").series and "house-omni" not in caps.models_for("generations")


def test_an_unknown_endpoint_is_ignored_with_a_warning():
    _write_config('[models.kling-v1]\nendpoints = ["video"]\n')
    s = load_settings()
    assert s.capabilities().get("kling-v1").endpoints == ("generations",)
    assert s.warnings == ["[models.kling-v1] endpoints has the wrong type (got ['video']); ignored."]
