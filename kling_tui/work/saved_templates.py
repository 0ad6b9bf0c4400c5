"""Saved prompt templates: a name, the prompt and its variables' values, kept in
`templates.toml` in the config folder (written atomically; a damaged file is set aside, never
overwritten).

    [[template]]
    name = "animals"
    body = "a {red|blue} {{animal}}"
    zip = false
    variables = { animal = ["fox", "owl"] }
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from kling_tui.base import locations
from kling_tui.base.atomic import move_aside, write_atomic

FILE_NAME = "templates.toml"
NAME_MAX = 80


@dataclass(frozen=True)
class SavedTemplate:
    name: str
    body: str
    variables: dict[str, list[str]] = field(default_factory=dict)
    zipped: bool = False


class TemplateNameError(ValueError):
    """A name that cannot be saved under; the message names the rule."""


def templates_file() -> Path:
    return locations.config_dir() / FILE_NAME


def load_templates(path: Path | None = None) -> tuple[list[SavedTemplate], list[str]]:
    """The saved templates by name, and a warning per entry (or file) that could not be read."""
    path = path or templates_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [], [f"{path} cannot be read ({exc}); saving a template sets it aside"]
    found: dict[str, SavedTemplate] = {}
    warnings = []
    entries = data.get("template", [])
    for number, entry in enumerate(entries if isinstance(entries, list) else [], start=1):
        template = _from_toml(entry)
        if template is None:
            warnings.append(f"{path}: template {number} is not name, body, zip and variables; it was skipped")
        else:
            found[template.name] = template
    return sorted(found.values(), key=lambda t: t.name.casefold()), warnings


def _from_toml(entry: Any) -> SavedTemplate | None:
    if not isinstance(entry, Mapping):
        return None
    name, body, zipped = entry.get("name"), entry.get("body"), entry.get("zip", False)
    variables = entry.get("variables", {})
    if not (isinstance(name, str) and name.strip() and isinstance(body, str) and isinstance(zipped, bool)):
        return None
    if not isinstance(variables, Mapping) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v) for k, v in variables.items()
    ):
        return None
    return SavedTemplate(name.strip(), body, {k: list(v) for k, v in variables.items()}, zipped)


def check_name(name: str) -> str:
    """The name as saved (trimmed); raises TemplateNameError naming the rule it breaks."""
    name = name.strip()
    if not name:
        raise TemplateNameError("template name: must not be empty")
    if len(name) > NAME_MAX:
        raise TemplateNameError(f"template name: must be at most {NAME_MAX} characters (got {len(name)})")
    if not name.isprintable():
        raise TemplateNameError("template name: must be printable text (no control characters)")
    return name


def save_template(template: SavedTemplate, path: Path | None = None) -> tuple[list[SavedTemplate], str | None]:
    """Add `template`, replacing one of the same name. Returns every template and, when the old
    file could not be read in full, where it was set aside. Raises TemplateNameError, OSError."""
    path = path or templates_file()
    template = SavedTemplate(check_name(template.name), template.body, template.variables, template.zipped)
    templates, warnings = load_templates(path)
    # Whatever could not be read stays in a copy: the new file holds only what could.
    aside = str(move_aside(path)) if warnings and path.exists() else None
    kept = [t for t in templates if t.name != template.name] + [template]
    write_atomic(path, _to_toml(kept).encode("utf-8"))
    return sorted(kept, key=lambda t: t.name.casefold()), aside


def _to_toml(templates: Sequence[SavedTemplate]) -> str:
    return tomli_w.dumps(
        {
            "template": [
                {
                    "name": t.name,
                    "body": t.body,
                    "zip": t.zipped,
                    "variables": {k: list(v) for k, v in t.variables.items()},
                }
                for t in templates
            ]
        }
    )
