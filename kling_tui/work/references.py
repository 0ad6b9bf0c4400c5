"""Input images named the way a user names them: a file, a URL, or an image of a past task.

`TASK[:INDEX]` is a task of the history (its local id, task_id or external_task_id) and the
1-based number of one of its images (default 1). It resolves to that image's saved file in the
task's folder (or, while it is still online, its URL), and carries the lineage to record.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from kling_tui.api.types import LOCAL_IMAGE_SUFFIXES, Parent
from kling_tui.history.store import HistoryStore, TaskRecord

URL_LIFETIME = 30 * 86400  # Kling deletes result images 30 days after the task
_TASK_REF = re.compile(r"(?P<task>.+?)(?::(?P<index>-?\d+))?")


class ImageRefError(ValueError):
    """A TASK[:INDEX] that names no usable image; the message says why."""


@dataclass(frozen=True)
class ImageInput:
    source: str  # a local path or an http(s) URL, as the request types take them
    parent: Parent | None = None  # (local id, 1-based image) when it came from the history


def find_task(store: HistoryStore, ident: str) -> TaskRecord | None:
    """A record by local id, server task_id or external_task_id."""
    ident = ident.strip()
    return store.get(ident) or store.find_by_task_id(ident) or store.find_by_external_id(ident)


def resolve_image(store: HistoryStore, value: str, now: float | None = None) -> ImageInput:
    """Turn PATH, URL or TASK[:INDEX] into an input; raises ImageRefError for a task it cannot use.

    An existing file wins over a task of the same name; a missing .jpg/.png file is left as a
    path, so that the image rules report it like any other.
    """
    value = value.strip()
    if value.startswith(("http://", "https://")) or Path(os.path.expanduser(value)).is_file():
        return ImageInput(value)
    match = _TASK_REF.fullmatch(value)
    record = find_task(store, match.group("task")) if match else None
    if record is None or match is None:
        if Path(value).suffix.lower() in LOCAL_IMAGE_SUFFIXES:
            return ImageInput(value)
        raise ImageRefError(f"{value} is not a .jpg/.png file, an http(s) URL or a task in the history")
    index = int(match.group("index") or 1)
    return image_of(store, record, index, now)


def image_of(store: HistoryStore, record: TaskRecord, index: int, now: float | None = None) -> ImageInput:
    """Image `index` (1-based) of a task in the history, as an input made from it."""
    count = len(record.image_urls)
    if record.status != "succeed" or count == 0:
        raise ImageRefError(f"task {record.local_id} has no images (status {record.status})")
    if not 1 <= index <= count:
        raise ImageRefError(f"task {record.local_id} has images 1 to {count} (got {index})")
    parent = (record.local_id, index)
    if index <= len(record.image_paths):
        path = store.task_dir(record.local_id) / record.image_paths[index - 1]
        if path.is_file():
            return ImageInput(str(path), parent)
    now = time.time() if now is None else now
    if record.finished_at is not None and now - record.finished_at < URL_LIFETIME:
        return ImageInput(record.image_urls[index - 1], parent)
    raise ImageRefError(f"image {index} of task {record.local_id} was never saved and its URL has expired (30 days)")
