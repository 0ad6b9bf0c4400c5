"""Models the service has answered "discontinued" for, remembered in the user's data.

The packaged table (models.toml) says when a model is announced to retire; only the service
knows when it really stops. Its answer is kept here, per service (the sandbox apart), so the
form stops preselecting the model and every later submit to it is warned about:

    data_dir()/retired-models.toml          (data_dir()/sandbox/... for the sandbox)
    [models.kling-v1]
    since = 2026-11-29
    message = "The model 'kling-v1' has been discontinued"

Deleting the file (or a table in it) forgets the answer.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from kling_tui.base import locations
from kling_tui.base.atomic import write_atomic

FILE_NAME = "retired-models.toml"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RetiredModel:
    name: str
    since: dt.date
    message: str


def retired_file(sandbox: bool = False) -> Path:
    folder = locations.data_dir() / "sandbox" if sandbox else locations.data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / FILE_NAME


def load_retired(sandbox: bool = False) -> dict[str, RetiredModel]:
    """What the service said, by model; a missing or unreadable file is simply nothing known."""
    try:
        data = tomllib.loads(retired_file(sandbox).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    models = data.get("models")
    return dict(_entries(models)) if isinstance(models, Mapping) else {}


def _entries(models: Mapping[str, Any]):
    for name, entry in models.items():
        if not isinstance(entry, Mapping):
            continue
        since = entry.get("since")
        message = entry.get("message")
        if isinstance(since, dt.date) and not isinstance(since, dt.datetime) and isinstance(message, str):
            yield name, RetiredModel(name, since, message)


def remember_retired(name: str, message: str, *, sandbox: bool = False, today: dt.date | None = None) -> bool:
    """Record that the service answered `message` for `name`; False when it was known already."""
    known = load_retired(sandbox)
    if name in known:
        return False
    known[name] = RetiredModel(name, today or dt.date.today(), message)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "models": {m.name: {"since": m.since, "message": m.message} for m in known.values()},
    }
    write_atomic(retired_file(sandbox), tomli_w.dumps(doc).encode("utf-8"), mode=0o600)
    return True
