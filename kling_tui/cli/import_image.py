"""`kling-tui import IMAGE`: read back how an image was made, from the parameters inside it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_INVALID, EXIT_OK, CommandError, Console
from kling_tui.history.metadata import MetadataError, read_parameters

# Shown first, in this order; every other field follows.
FIRST_FIELDS = ("prompt", "negative_prompt", "model_name", "n", "aspect_ratio", "resolution")


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(plain(v) for v in value)
    return plain(value)


def cmd_import(args: argparse.Namespace, console: Console) -> int:
    path = Path(args.image).expanduser()
    try:
        found = read_parameters(path)
    except MetadataError as exc:
        raise CommandError(plain(exc), EXIT_INVALID) from None
    if found is None:
        if console.as_json:
            console.json({"path": str(path), "made_by_kling_tui": False, "reference": str(path)})
        else:
            console.out(f"{plain(path.name)} was not made by kling-tui: it has no parameters inside.")
            console.out(f"It can be used as a reference image: kling-tui generate PROMPT --image {plain(path)}")
        return EXIT_OK
    if console.as_json:
        console.json({"path": str(path), "made_by_kling_tui": True, **found.data})
        return EXIT_OK
    data = found.data
    console.out(f"kind:      {plain(found.kind)}" + (f" ({plain(data['endpoint'])})" if data.get("endpoint") else ""))
    names = [n for n in FIRST_FIELDS if n in found.params] + sorted(set(found.params) - set(FIRST_FIELDS))
    for name in names:
        console.out(f"{plain(name) + ':':<18} {_value(found.params[name])}")
    for name in ("task_id", "external_task_id", "local_id", "group", "image_index", "created_at", "finished_at"):
        if data.get(name) not in (None, ""):
            console.out(f"{name + ':':<18} {_value(data[name])}")
    if data.get("units") not in (None, ""):
        console.out(f"{'units:':<18} {_value(data['units'])}")
    return EXIT_OK
