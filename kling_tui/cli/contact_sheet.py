"""`kling-tui export --format html --out DIR`: a contact sheet that opens in any browser.

DIR gets `index.html` and `thumbs/` (a 512 px copy of every saved image); nothing refers to
files outside DIR, so the folder can be zipped and sent. Tasks are grouped by variant group
(records sharing `group`) and, for records that name a parent task, shown under it. Every
text comes from users or servers and is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kling_tui.base.atomic import write_atomic
from kling_tui.history.metadata import sanitize_params
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.history.thumbs import TooLarge, load_small

SHEET_THUMB_SIDE = 512

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.task { display: inline-block; vertical-align: top; width: 540px; margin: 0 1em 1.5em 0; background: #fff;
        border: 1px solid #ddd; border-radius: 6px; padding: .75em; }
.task.child { margin-left: 2em; border-left: 4px solid #88a; }
.images img { max-width: 256px; max-height: 256px; margin: 0 4px 4px 0; }
.prompt { font-weight: 600; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: 12px; } td { padding: 1px 6px 1px 0; vertical-align: top; }
td.k { color: #666; } .meta { color: #666; font-size: 12px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _parent(record: TaskRecord) -> str | None:
    """The task this one was made from (its first parent), for lineage."""
    return record.parent_id


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _thumbs(record: TaskRecord, store: HistoryStore, out: Path) -> list[str]:
    folder = store.task_dir(record.local_id)
    names = []
    for index, name in enumerate(record.image_paths):
        source = folder / name
        target = out / "thumbs" / f"{record.local_id}-{index + 1}.jpg"
        try:
            small = load_small(source, SHEET_THUMB_SIDE)
            small.convert("RGB").save(target, "JPEG", quality=85)
        except (OSError, ValueError, TooLarge):
            continue  # a missing or unreadable image is left out, the task is not
        names.append(f"thumbs/{target.name}")
    return names


def _card(record: TaskRecord, images: list[str], child: bool) -> str:
    params = sanitize_params(record.params)
    prompt = params.pop("prompt", "")
    rows = "".join(f'<tr><td class="k">{_e(k)}</td><td>{_e(_value(v))}</td></tr>' for k, v in sorted(params.items()))
    meta = [record.kind, record.status, _when(record.created_at)]
    if record.units:
        meta.append(f"{record.units} units")
    parent = _parent(record)
    lineage = f' · from <a href="#t-{_e(parent)}">{_e(parent)}</a>' if parent else ""
    pictures = "".join(
        f'<a href="{_e(src)}"><img src="{_e(src)}" alt="image {i + 1}"></a>' for i, src in enumerate(images)
    )
    return (
        f'<div class="task{" child" if child else ""}" id="t-{_e(record.local_id)}">'
        f'<div class="images">{pictures or "<em>no saved images</em>"}</div>'
        f'<div class="prompt">{_e(prompt)}</div>'
        f'<div class="meta">{_e(" · ".join(meta))} · {_e(record.local_id)}{lineage}</div>'
        f"<table>{rows}</table></div>"
    )


def write_contact_sheet(records: Iterable[TaskRecord], store: HistoryStore, out: Path) -> Path:
    """Write DIR/index.html and DIR/thumbs/; returns the path of index.html."""
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    everything = list(records)
    by_id = {r.local_id: r for r in everything}
    children: dict[str, list[TaskRecord]] = {}
    for record in everything:
        parent = _parent(record)
        if parent in by_id:
            children.setdefault(parent, []).append(record)
    sections: dict[str, list[TaskRecord]] = {}  # a variant group, or one task alone
    for record in everything:
        if _parent(record) in by_id:
            continue  # shown under its parent
        sections.setdefault(record.group or record.local_id, []).append(record)

    def cards(record: TaskRecord, child: bool = False) -> str:
        body = _card(record, _thumbs(record, store, out), child)
        return body + "".join(cards(c, True) for c in children.get(record.local_id, []))

    parts = []
    for key, members in sections.items():
        if members[0].group:
            parts.append(f"<h2>Variant group {_e(key)} · {len(members)} tasks</h2>")
        parts.append("<section>" + "".join(cards(r) for r in members) + "</section>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>kling-tui contact sheet</title><style>{STYLE}</style></head><body>"
        f"<h1>kling-tui contact sheet · {len(everything)} tasks</h1>{''.join(parts)}</body></html>\n"
    )
    index = out / "index.html"
    write_atomic(index, page.encode("utf-8"), mode=0o644)
    return index
