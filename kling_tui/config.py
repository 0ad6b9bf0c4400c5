"""Typed settings: the config file (TOML), overridden by the environment.

`locations.config_file()`, every key optional:

    default_model = "kling-v1"        # model preselected in the form (and sent when none is named)
    default_models = ["kling-v3", "kling-v2-1"]  # the form's default: the first not retired
    [auth]
    access_key = "..."                # AK/SK: signed into a short-lived JWT
    secret_key = "..."
    api_key = "..."                   # or a static API key (used when both are set)
    [api]
    region = "singapore"              # "singapore" | "beijing" | "custom"
    base_url = "https://..."          # wins over region when set (required for "custom")
    sandbox = false                   # talk to the built-in local sandbox instead
    request_deadline = 60             # seconds one request or download may take in all
    [ui]
    theme = "textual-dark"
    image_protocol = "auto"           # auto | kitty | sixel | halfcell | unicode | none
    poll_interval = 2.0               # seconds between status polls
    [queue]
    concurrency = 9                   # image slots of your resource pack
    [keymap]
    submit = "ctrl+j"                 # binding id = key
    [budget]
    daily = 200                       # units a local day; a submit that would pass it asks first
    session = 50                      # units one app run (or one CLI command) may spend
    [models.NAME]                     # capability overrides, same fields as models.toml

Environment (wins over the file): KLING_ACCESS_KEY + KLING_SECRET_KEY, KLING_API_KEY,
KLING_BASE_URL.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from kling_tui.api.capabilities import (
    ENDPOINTS,
    RESOLUTIONS,
    USES,
    Capabilities,
    ModelCaps,
    default_capabilities,
    load_capabilities,
    parse_date,
)
from kling_tui.base import locations
from kling_tui.base.atomic import move_aside, write_atomic

REGIONS = {
    "singapore": "https://api-singapore.klingai.com",
    "beijing": "https://api-beijing.klingai.com",
}
REGION_CHOICES = (*REGIONS, "custom")
IMAGE_PROTOCOLS = ("auto", "kitty", "sixel", "halfcell", "unicode", "none")
MAX_CONCURRENCY = 64
DEFAULT_REQUEST_DEADLINE = 60.0

_MODEL_FIELDS = {f.name: f for f in fields(ModelCaps) if f.name != "name"}


@dataclass
class Settings:
    """Everything configurable. Secrets are kept out of repr; `warnings` never holds them."""

    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    region: str = "singapore"
    custom_base_url: str = ""
    sandbox: bool = False
    request_deadline: float = DEFAULT_REQUEST_DEADLINE  # seconds per request or download, in all
    theme: str = "textual-dark"
    image_protocol: str = "auto"
    poll_interval: float = 2.0
    concurrency: int = 9
    keymap: dict[str, str] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_model: str | None = None
    default_models: list[str] = field(default_factory=list)
    budget_daily: float | None = None  # units; None: no budget
    budget_session: float | None = None
    # Where each credential came from ("file" / "environment"), for the settings screen.
    credential_source: str = ""
    path: Path | None = None
    warnings: list[str] = field(default_factory=list, compare=False)
    # Keys this version does not know, kept so that saving does not lose them.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key) or bool(self.access_key and self.secret_key)

    @property
    def base_url(self) -> str:
        """A configured base URL wins; otherwise the region's host."""
        if self.custom_base_url:
            return self.custom_base_url.rstrip("/")
        return REGIONS.get(self.region, REGIONS["singapore"])

    @property
    def auth_scheme(self) -> str | None:
        """ "api_key", "ak_sk", or None without credentials."""
        if self.api_key:
            return "api_key"
        if self.access_key and self.secret_key:
            return "ak_sk"
        return None

    def capabilities(self) -> Capabilities:
        """The packaged model table with this config's [models.NAME] overrides merged in."""
        if not self.models and not self.default_model and not self.default_models:
            return default_capabilities()
        overrides: dict[str, Any] = {"models": self.models}
        if self.default_model:
            overrides["default_model"] = self.default_model
        if self.default_models:
            overrides["default_models"] = list(self.default_models)
        try:
            return load_capabilities(overrides)
        except (TypeError, ValueError) as exc:
            self.warnings.append(
                f"[models] overrides could not be applied ({type(exc).__name__}); using the built-in model table."
            )
            return default_capabilities()


# -- loading ------------------------------------------------------------------------------


class _Reader:
    """Typed access to one parsed file, collecting a warning for each bad value."""

    def __init__(self, data: Mapping[str, Any], warnings: list[str]) -> None:
        self.data = data
        self.warnings = warnings

    def table(self, name: str) -> Mapping[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            self.warnings.append(f"[{name}] must be a table; ignored.")
            return {}
        return value

    def get(self, table: str, key: str, kind: type | tuple[type, ...], default: Any, *, secret: bool = False) -> Any:
        section = self.table(table) if table else self.data
        if key not in section:
            return default
        value = section[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            where = f"[{table}] {key}" if table else key
            shown = "" if secret else f" (got {value!r})"
            self.warnings.append(f"{where} must be {_type_name(kinds)}{shown}; using the default.")
            return default
        return value


def _type_name(kinds: tuple[type, ...]) -> str:
    names = {str: "text", bool: "true or false", int: "a whole number", float: "a number"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


_KNOWN = {
    "": {"default_model", "default_models", "auth", "api", "ui", "queue", "keymap", "models", "budget"},
    "auth": {"access_key", "secret_key", "api_key"},
    "api": {"region", "base_url", "sandbox", "request_deadline"},
    "ui": {"theme", "image_protocol", "poll_interval"},
    "queue": {"concurrency"},
    "budget": {"daily", "session"},
}


def _from_data(data: Mapping[str, Any], warnings: list[str]) -> Settings:
    r = _Reader(data, warnings)
    s = Settings()
    s.access_key = r.get("auth", "access_key", str, "", secret=True).strip()
    s.secret_key = r.get("auth", "secret_key", str, "", secret=True).strip()
    s.api_key = r.get("auth", "api_key", str, "", secret=True).strip()
    if s.has_credentials:
        s.credential_source = "file"

    region = r.get("api", "region", str, "singapore")
    if region not in REGION_CHOICES:
        warnings.append(f"[api] region must be one of {', '.join(REGION_CHOICES)} (got {region!r}); using singapore.")
        region = "singapore"
    s.region = region
    s.custom_base_url = r.get("api", "base_url", str, "").strip()
    s.sandbox = r.get("api", "sandbox", bool, False)
    deadline = r.get("api", "request_deadline", (int, float), s.request_deadline)
    if not 1 <= deadline <= 3600:
        warnings.append(f"[api] request_deadline must be between 1 and 3600 seconds (got {deadline}); using 60.")
        deadline = DEFAULT_REQUEST_DEADLINE
    s.request_deadline = float(deadline)

    s.theme = r.get("ui", "theme", str, s.theme)
    protocol = r.get("ui", "image_protocol", str, s.image_protocol)
    if protocol not in IMAGE_PROTOCOLS:
        warnings.append(
            f"[ui] image_protocol must be one of {', '.join(IMAGE_PROTOCOLS)} (got {protocol!r}); using auto."
        )
        protocol = "auto"
    s.image_protocol = protocol
    interval = r.get("ui", "poll_interval", (int, float), s.poll_interval)
    if not 0.2 <= interval <= 600:
        warnings.append(f"[ui] poll_interval must be between 0.2 and 600 seconds (got {interval}); using 2.")
        interval = 2.0
    s.poll_interval = float(interval)

    concurrency = r.get("queue", "concurrency", int, s.concurrency)
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        warnings.append(f"[queue] concurrency must be between 1 and {MAX_CONCURRENCY} (got {concurrency}); using 9.")
        concurrency = 9
    s.concurrency = concurrency

    for binding, key in r.table("keymap").items():
        if isinstance(key, str) and key.strip():
            s.keymap[binding] = key.strip()
        else:
            warnings.append(f'[keymap] {binding} must be a key name such as "ctrl+j"; ignored.')

    s.models = _models(r.table("models"), warnings)
    default_model = r.get("", "default_model", str, "")
    s.default_model = default_model or None
    preferred = r.get("", "default_models", list, [])
    if all(isinstance(name, str) and name for name in preferred):
        s.default_models = list(preferred)
    else:
        warnings.append("default_models must be a list of model names; using the built-in order.")
    for key in ("daily", "session"):
        limit = r.get("budget", key, (int, float), None)
        if limit is not None and limit <= 0:
            warnings.append(f"[budget] {key} must be a positive number of units (got {limit}); no {key} budget.")
            limit = None
        setattr(s, f"budget_{key}", None if limit is None else float(limit))

    s.extra = _unknown(data, warnings)
    return s


def _models(table: Mapping[str, Any], warnings: list[str]) -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}
    for name, values in table.items():
        if not isinstance(values, Mapping):
            warnings.append(f"[models.{name}] must be a table of model fields; ignored.")
            continue
        kept: dict[str, Any] = {}
        for key, value in values.items():
            if key not in _MODEL_FIELDS:
                warnings.append(f"[models.{name}] {key} is not a model field; ignored.")
            elif not _model_value_ok(key, value):
                warnings.append(f"[models.{name}] {key} has the wrong type (got {value!r}); ignored.")
            else:
                kept[key] = value
        models[name] = kept
    return models


_PRICE_KEYS = {f"{use}{res}" for use in (*USES, "default") for res in ("", *(f"_{r}" for r in RESOLUTIONS))}


def _is_price(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _model_value_ok(key: str, value: Any) -> bool:
    if key in ("text_to_image", "multi_image", "discontinued", "series"):
        return isinstance(value, bool)
    if key in ("units_per_image", "units_per_image_2k", "units_per_image_4k"):
        return _is_price(value)
    if key in ("label", "note", "successor"):
        return isinstance(value, str)
    if key == "retires":
        try:
            return isinstance(value, (str, dt.date)) and (parse_date(value) is not None or value == "")
        except ValueError:
            return False
    if key == "prices":
        return isinstance(value, Mapping) and all(k in _PRICE_KEYS and _is_price(v) for k, v in value.items())
    if key == "endpoints":
        return isinstance(value, list) and all(v in ENDPOINTS for v in value)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _unknown(data: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KNOWN[""]:
            warnings.append(f"Unknown setting {key!s}; kept but not used.")
            extra[key] = value
    for table in ("auth", "api", "ui", "queue", "budget"):
        section = data.get(table)
        if isinstance(section, Mapping):
            for key in section:
                if key not in _KNOWN[table]:
                    warnings.append(f"Unknown setting [{table}] {key}; kept but not used.")
                    extra.setdefault(table, {})[key] = section[key]
    return extra


def _apply_environment(s: Settings, environ: Mapping[str, str], warnings: list[str]) -> None:
    access = environ.get("KLING_ACCESS_KEY", "").strip()
    secret = environ.get("KLING_SECRET_KEY", "").strip()
    if access and secret:
        s.access_key, s.secret_key = access, secret
        s.credential_source = "environment"
    elif access or secret:
        missing = "KLING_SECRET_KEY" if access else "KLING_ACCESS_KEY"
        warnings.append(f"{missing} is not set, so the other half of the key pair in the environment is ignored.")
    api_key = environ.get("KLING_API_KEY", "").strip()
    if api_key:
        s.api_key = api_key
        s.credential_source = "environment"
    base_url = environ.get("KLING_BASE_URL", "").strip()
    if base_url:
        s.custom_base_url = base_url


def config_permission_warning(path: Path) -> str | None:
    """A warning when the config file (which may hold keys) is readable by others."""
    if os.name != "posix":
        return None
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} can be read by other users (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
    return None


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file and the environment. Never raises for a bad file: see `warnings`."""
    path = path or locations.config_file()
    environ = os.environ if environ is None else environ
    warnings: list[str] = []
    data: dict[str, Any] = {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, tomllib.TOMLDecodeError) else "not UTF-8 text"
        try:
            moved = move_aside(path)
            warnings.append(
                f"The config file could not be read ({reason}); moved it to {moved.name} and started with defaults."
            )
        except OSError as move_error:
            warnings.append(
                f"The config file could not be read ({reason}) nor moved aside ({move_error.strerror}); using defaults."
            )
    except OSError as exc:
        warnings.append(f"Cannot read the config file {path}: {exc.strerror or exc}; using defaults.")
    else:
        permission = config_permission_warning(path)
        if permission:
            warnings.append(permission)
    settings = _from_data(data, warnings)
    _apply_environment(settings, environ, warnings)
    if settings.region == "custom" and not settings.custom_base_url:
        warnings.append('[api] region is "custom" but no base_url is set; using the singapore host.')
    settings.path = path
    settings.warnings = warnings
    return settings


# -- saving -------------------------------------------------------------------------------


def settings_to_toml(settings: Settings) -> str:
    """The settings as a config file; empty values are left out so defaults stay defaults."""
    doc: dict[str, Any] = {}
    if settings.default_model:
        doc["default_model"] = settings.default_model
    if settings.default_models:
        doc["default_models"] = list(settings.default_models)
    doc["auth"] = {
        k: v
        for k, v in (
            ("access_key", settings.access_key),
            ("secret_key", settings.secret_key),
            ("api_key", settings.api_key),
        )
        if v
    }
    doc["api"] = {"region": settings.region, "sandbox": settings.sandbox}
    if settings.custom_base_url:
        doc["api"]["base_url"] = settings.custom_base_url
    doc["ui"] = {
        "theme": settings.theme,
        "image_protocol": settings.image_protocol,
        "poll_interval": settings.poll_interval,
    }
    doc["queue"] = {"concurrency": settings.concurrency}
    if settings.keymap:
        doc["keymap"] = dict(settings.keymap)
    budget = {k: v for k, v in (("daily", settings.budget_daily), ("session", settings.budget_session)) if v}
    if budget:
        doc["budget"] = budget
    if settings.models:
        doc["models"] = {name: dict(values) for name, values in settings.models.items()}
    for key, value in settings.extra.items():
        if isinstance(value, Mapping) and isinstance(doc.get(key), dict):
            doc[key] = {**value, **doc[key]}
        else:
            doc.setdefault(key, value)
    if not doc["auth"]:
        del doc["auth"]
    return tomli_w.dumps(doc)


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the config file atomically, readable only by its owner (0600 from the start).

    A value that is exactly what the environment supplies is not written: the file keeps its
    own (so exporting KLING_API_KEY for one run never copies the key into the file).
    """
    path = path or settings.path or locations.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, settings_to_toml(_without_environment(settings, path)).encode("utf-8"), mode=0o600)
    settings.path = path
    return path


_ENV_FIELDS = {
    "access_key": "KLING_ACCESS_KEY",
    "secret_key": "KLING_SECRET_KEY",
    "api_key": "KLING_API_KEY",
    "custom_base_url": "KLING_BASE_URL",
}


def _without_environment(settings: Settings, path: Path) -> Settings:
    from_env = [
        name
        for name, var in _ENV_FIELDS.items()
        if os.environ.get(var, "").strip() and getattr(settings, name) == os.environ[var].strip()
    ]
    if not from_env:
        return settings
    on_disk = load_settings(path, environ={})
    return replace(settings, **{name: getattr(on_disk, name) for name in from_env})
