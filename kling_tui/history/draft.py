"""The form's unsent contents, kept across restarts so no typing is ever lost."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from kling_tui.base import locations
from kling_tui.base.atomic import move_aside, write_atomic

SCHEMA_VERSION = 1


def draft_file() -> Path:
    return locations.data_dir() / "draft.toml"


def load_draft(path: Path | None = None) -> dict[str, Any]:
    path = path or draft_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        # A damaged draft is not worth a warning dialog: keep it aside and start empty.
        move_aside(path)
        return {}
    values = data.get("form", {})
    return values if isinstance(values, dict) else {}


def save_draft(values: dict[str, Any], path: Path | None = None) -> None:
    path = path or draft_file()
    clean = {k: v for k, v in values.items() if isinstance(v, (str, int, float, bool))}
    body = tomli_w.dumps({"schema_version": SCHEMA_VERSION, "form": clean})
    write_atomic(path, body.encode("utf-8"), durable=False)
