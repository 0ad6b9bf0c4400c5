"""Realistic history in bulk, for benchmarks and tests: the same on-disk format, written fast."""

from __future__ import annotations

import os
import random
import time

from kling_tui.history.index import root_mtime_ns, row_values
from kling_tui.history.store import RECORD_FILE, HistoryStore, TaskRecord, _normalise_time, new_local_id, record_to_toml

_SUBJECTS = [
    "a red fox",
    "an old lighthouse",
    "a tea house",
    "a paper boat",
    "a robot gardener",
    "a snowy owl",
    "a neon street",
    "a koi pond",
    "a desert caravan",
    "a glass greenhouse",
    "a jazz trio",
    "a mountain cabin",
]
_STYLES = [
    "at dawn",
    "in watercolour",
    "as a woodcut",
    "in soft film light",
    "in isometric pixel art",
    "under heavy rain",
    "in the style of an old map",
    "with long shadows",
    "at golden hour",
]
_MODELS = ["kling-v1", "kling-v1-5", "kling-v2", "kling-v2-1", "kling-v3"]
_RATIOS = ["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"]


def populate(store: HistoryStore, count: int, *, seed: int = 0, end: float | None = None) -> list[str]:
    """Write `count` finished tasks spread over the time before `end` (default: now).

    Returns their local ids, oldest first. Skips fsync and per-task index transactions; the
    files are exactly what `HistoryStore.save` writes.
    """
    rng = random.Random(seed)
    end = time.time() if end is None else end
    created = end - count * 45.0
    rows = []
    ids = []
    for i in range(count):
        created += rng.uniform(1.0, 89.0)
        local_id = new_local_id(created, rng.getrandbits(16))
        folder = store.root / local_id
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        n = rng.choice((1, 1, 1, 2, 4, 9))
        failed = rng.random() < 0.08
        params = {
            "prompt": f"{rng.choice(_SUBJECTS)} {rng.choice(_STYLES)}, study {i % 997}",
            "model_name": rng.choice(_MODELS),
            "n": n,
            "aspect_ratio": rng.choice(_RATIOS),
        }
        task_id = str(rng.randrange(10**17, 10**18))
        record = TaskRecord(
            local_id=local_id,
            kind="generation",
            params=params,
            external_task_id=f"{rng.getrandbits(128):032x}",
            status="failed" if failed else "succeed",
            status_msg="Content risk control: the prompt was rejected" if failed else "",
            task_id=task_id,
            created_at=_normalise_time(created),
            submitted_at=_normalise_time(created + 0.4),
            updated_at=_normalise_time(created + 25.0),
            finished_at=_normalise_time(created + 25.0),
            units=None if failed else str(n),
            image_urls=[] if failed else [f"https://cdn.example.invalid/{task_id}/{k}.png" for k in range(n)],
            starred=rng.random() < 0.03,
        )
        # A fresh folder has no reader yet, so a plain write is as safe as temp + rename here.
        fd = os.open(folder / RECORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(record_to_toml(record).encode("utf-8"))
        rows.append(row_values(record))
        ids.append(local_id)
    with store._lock:
        store._index.upsert_many(rows)
        store._index.set_meta("root_mtime_ns", str(root_mtime_ns(store.root)))
    return ids
