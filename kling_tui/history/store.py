"""The local task history: one human-readable TOML file per task, with a derived SQLite index.

Layout under `locations.history_dir()`:

    <local_id>/task.toml    the record (source of truth, `schema_version` in every file)
    <local_id>/*.png        the task's downloaded images

and `data_dir()/index.sqlite3`, the summary columns of every task, so that listing the newest
tasks and writing one task cost the same at 100,000 tasks as at 10. The index is rebuilt from
the TOML files when it is missing, of another version or damaged.

A write is: mark the task dirty in the index, write task.toml to a temp file and rename it
over the old one, then upsert the index row and clear the mark. A crash between the steps
leaves a dirty mark, and the next start re-reads just that task.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import stat
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from kling_tui.api.capabilities import KINDS
from kling_tui.api.validation import images_made
from kling_tui.base import locations
from kling_tui.base.atomic import exclusive, is_abandoned, move_aside, temp_files, write_atomic
from kling_tui.base.locations import StorageError, storage_error
from kling_tui.history.index import (
    FINAL_LOCAL_STATUSES,
    IndexDamaged,
    TaskIndex,
    TaskRow,
    is_damage,
    root_mtime_ns,
    row_values,
    storage_cause,
)

__all__ = ["SCHEMA_VERSION", "HistoryStore", "RecordError", "TaskRecord", "TaskRow", "new_local_id"]

SCHEMA_VERSION = 1
RECORD_FILE = "task.toml"
INDEX_FILE = "index.sqlite3"
# ASCII digits only and \Z, not $ (which also matches before a trailing newline).
LOCAL_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}\Z")
STATUSES = ("pending", "queued", "submitted", "processing", "succeed", "failed", "not_created", "error")
# A status the server sent that kling-tui does not know is kept as it came (made printable):
# it is data, shown as is, and the task stays active until the server says succeed or failed.
MAX_STATUS_CHARS = 64

# Never written to history, whatever a caller passes in params.
_CREDENTIAL_KEYS = frozenset(
    {"access_key", "secret_key", "api_key", "token", "jwt", "authorization", "password", "secret"}
)
_TIME_FIELDS = ("created_at", "submitted_at", "updated_at", "finished_at")

T = TypeVar("T")


@dataclass
class TaskRecord:
    """Everything kling-tui knows about one task; stored as `<local_id>/task.toml`."""

    local_id: str
    kind: str
    params: dict
    external_task_id: str
    status: str = "pending"
    status_msg: str = ""
    task_id: str | None = None
    created_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    units: str | None = None
    image_urls: list[str] = field(default_factory=list)
    image_paths: list[str] = field(default_factory=list)
    error_code: int | None = None
    starred: bool = False
    note: str = ""
    group: str | None = None
    queue_position: float | None = None  # order among queued tasks (lower goes first)
    # Lineage: the tasks whose images this one was made from, as {"local_id": ..., "image": 1-based};
    # image 0 stands for the task itself (a re-run on another model).
    parents: list[dict[str, Any]] = field(default_factory=list)
    # The prompt template the task was filled from, and the value each of its slots took
    # ({"animal": "cat", "{1}": "red"}; see work.templates).
    template: str | None = None
    template_values: dict[str, str] = field(default_factory=dict)

    @property
    def slots(self) -> int:
        """The concurrency slots the task holds while it runs: one per image it makes."""
        return self.n

    @property
    def parent_id(self) -> str | None:
        """The first parent's local id: the task this one was made from."""
        return self.parents[0]["local_id"] if self.parents else None

    # The process that recorded the task and sends it (base.processes token): another
    # process never sends or settles a task whose owner still runs.
    owner: str | None = None

    @property
    def prompt(self) -> str:
        value = self.params.get("prompt")
        return value if isinstance(value, str) else ""

    @property
    def model(self) -> str | None:
        value = self.params.get("model_name")
        return value if isinstance(value, str) else None

    @property
    def n(self) -> int:
        """The images the task makes: `n`, or `series_amount` for an Omni series."""
        return images_made(self.kind, self.params)

    @property
    def aspect_ratio(self) -> str | None:
        value = self.params.get("aspect_ratio")
        return value if isinstance(value, str) else None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_LOCAL_STATUSES

    @property
    def is_active(self) -> bool:
        return not self.is_final


class RecordError(ValueError):
    """A task.toml that cannot be understood."""


def is_storable_status(status: object) -> bool:
    """One of kling-tui's statuses, or a server's unknown one kept as printable text."""
    if status in STATUSES:
        return True
    return (
        isinstance(status, str)
        and 0 < len(status) <= MAX_STATUS_CHARS
        and status.isprintable()
        and status == status.strip()
    )


# -- local ids and times ------------------------------------------------------------------


def new_local_id(now: float | None = None, noise: int | None = None) -> str:
    """UTC time + 8 hex digits: safe as a folder name, sorts by creation time.

    The hex is the fraction of the second (4 digits, so ids made one after another sort in
    order) and 4 random digits (so two made at once differ).
    """
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    fraction = min(int((now % 1) * 0x10000), 0xFFFF)
    noise = secrets.randbits(16) if noise is None else noise & 0xFFFF
    return f"{stamp}-{fraction:04x}{noise:04x}"


def _to_datetime(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _normalise_time(epoch: float | None) -> float | None:
    """Round to what TOML keeps (microseconds), so a saved record equals the reloaded one."""
    return None if epoch is None else _to_datetime(epoch).timestamp()


# -- TOML (de)serialisation ----------------------------------------------------------------


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value if v is not None]
    return value


def _clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _without_none(params).items() if k.lower() not in _CREDENTIAL_KEYS}


def record_to_toml(record: TaskRecord) -> str:
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "local_id": record.local_id,
        "kind": record.kind,
        "status": record.status,
        "status_msg": record.status_msg,
        "task_id": record.task_id,
        "external_task_id": record.external_task_id,
        "units": record.units,
        "error_code": record.error_code,
        "starred": record.starred,
        "group": record.group,
        "note": record.note,
        "queue_position": record.queue_position,
        "owner": record.owner,
    }
    for name in _TIME_FIELDS:
        value = getattr(record, name)
        doc[name] = None if value is None else _to_datetime(value)
    doc["image_urls"] = list(record.image_urls)
    doc["image_paths"] = list(record.image_paths)
    doc["params"] = _clean_params(record.params)
    if record.parents:
        doc["parents"] = [{"local_id": p["local_id"], "image": p["image"]} for p in record.parents]
    if record.template is not None:
        doc["template"] = {"body": record.template, "values": dict(record.template_values)}
    return tomli_w.dumps({k: v for k, v in doc.items() if v is not None})


def _expect(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None, *, required=False):
    if key not in data:
        if required:
            raise RecordError(f"missing {key}")
        return default
    value = data[key]
    if not isinstance(value, kind) or (
        isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise RecordError(f"{key} has the wrong type ({type(value).__name__})")
    return value


def _epoch(data: Mapping[str, Any], key: str, *, required=False) -> float | None:
    value = _expect(data, key, (dt.datetime, int, float), required=required)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # a hand-edited local time: read it as UTC
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    return float(value)


def _str_list(data: Mapping[str, Any], key: str) -> list[str]:
    value = _expect(data, key, list, [])
    if not all(isinstance(v, str) for v in value):
        raise RecordError(f"{key} must be a list of strings")
    return list(value)


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = _expect(data, key, (int, float))
    return None if value is None or isinstance(value, bool) else float(value)


def _parents(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    value = _expect(data, "parents", list, [])
    parents = []
    for item in value:
        if not (
            isinstance(item, Mapping)
            and isinstance(item.get("local_id"), str)
            and isinstance(item.get("image"), int)
            and not isinstance(item.get("image"), bool)
        ):
            raise RecordError('parents must be a list of {local_id = "...", image = N}')
        parents.append({"local_id": item["local_id"], "image": item["image"]})
    return parents


def _template(data: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    value = _expect(data, "template", dict)
    if value is None:
        return None, {}
    body, values = value.get("body"), value.get("values", {})
    if not (
        isinstance(body, str)
        and isinstance(values, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
    ):
        raise RecordError('template must be {body = "...", values = {name = "value", ...}}')
    return body, dict(values)


def record_from_toml(local_id: str, text: str) -> TaskRecord:
    """Parse one task.toml; raises RecordError when it is damaged or from a newer version."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecordError(f"not valid TOML: {exc}") from None
    version = _expect(data, "schema_version", int, SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        raise RecordError(f"schema_version {version} is newer than this kling-tui understands ({SCHEMA_VERSION})")
    kind = _expect(data, "kind", str, required=True)
    status = _expect(data, "status", str, "pending")
    template, template_values = _template(data)
    return TaskRecord(
        local_id=local_id,
        kind=kind,
        params=dict(_expect(data, "params", dict, {})),
        external_task_id=_expect(data, "external_task_id", str, ""),
        status=status,
        status_msg=_expect(data, "status_msg", str, ""),
        task_id=_expect(data, "task_id", str),
        created_at=_epoch(data, "created_at", required=True) or 0.0,
        submitted_at=_epoch(data, "submitted_at"),
        updated_at=_epoch(data, "updated_at"),
        finished_at=_epoch(data, "finished_at"),
        units=_expect(data, "units", str),
        image_urls=_str_list(data, "image_urls"),
        image_paths=_str_list(data, "image_paths"),
        error_code=_expect(data, "error_code", int),
        starred=_expect(data, "starred", bool, False),
        note=_expect(data, "note", str, ""),
        group=_expect(data, "group", str),
        queue_position=_number(data, "queue_position"),
        parents=_parents(data),
        owner=_expect(data, "owner", str),
        template=template,
        template_values=template_values,
    )


# -- the store ------------------------------------------------------------------------------


_RECORD_FIELDS = {f.name for f in fields(TaskRecord)}


class HistoryStore:
    """Task history on disk. Thread-safe: the app calls it from thread workers."""

    def __init__(self, root: Path | None = None, *, index_path: Path | None = None) -> None:
        self.root = Path(root) if root is not None else locations.history_dir()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error("create the history folder", self.root, exc) from exc
        self.index_path = index_path or self.root.parent / INDEX_FILE
        self.warnings: list[str] = []
        self._refused_images: set[tuple[str, str]] = set()  # warned about once each
        # Tasks this store recorded, oldest first: what a failed command may have to undo.
        self.created: list[str] = []
        # Told (from whichever thread wrote) when history cannot be written, so that a command
        # can stop at once instead of waiting on a loop that keeps failing.
        self.on_write_error: Callable[[StorageError], object] | None = None
        self._lock = threading.RLock()
        self._index = TaskIndex(self.index_path)
        try:
            self._open_index()
        except Exception as exc:
            self._index.close()
            error = self._storage_error(exc, "open the history index")
            if error is exc:
                raise
            raise error from exc

    # -- index lifecycle -----------------------------------------------------------------

    def _open_index(self) -> None:
        try:
            state = self._index.open()
        except IndexDamaged:
            self._set_index_aside()
            state = self._index.open()
        if state == "ok":
            self._catch_up()
        else:
            self._rebuild()

    def _set_index_aside(self) -> None:
        self._index.close()
        moved = move_aside(self.index_path)
        self._index.discard_sidecars()
        self.warnings.append(
            f"The history index was damaged; moved it to {moved.name} and rebuilt it from the task files."
        )

    def _recover(self) -> None:
        self._set_index_aside()
        self._index.open()
        self._rebuild()

    def _storage_error(self, exc: Exception, action: str, path: Path | None = None) -> Exception:
        """`exc` as a StorageError when it means the disk refuses (read-only, full); else `exc`."""
        if isinstance(exc, StorageError):
            return exc
        cause = storage_cause(exc)
        if cause is not None:
            return storage_error(action, self.index_path, cause)
        if isinstance(exc, OSError):
            return storage_error(action, path or self.index_path, exc)
        return exc

    def _guarded(self, action: Callable[[], T]) -> T:
        """Run an index operation; a damaged index is set aside, rebuilt, and the action retried.

        An index the disk will not let us write raises StorageError.
        """
        with self._lock:
            try:
                try:
                    return action()
                except Exception as exc:
                    if not is_damage(exc):
                        raise
                self._recover()
                return action()
            except Exception as exc:
                error = self._storage_error(exc, "write the history index")
                if error is exc:
                    raise
                raise error from exc

    def _catch_up(self) -> None:
        """Bring the index up to date at O(changes): unfinished writes, and folders added or removed by hand."""
        for local_id in self._index.dirty_ids():
            self._reindex_one(local_id)
        stamp = str(root_mtime_ns(self.root))
        if self._index.get_meta("root_mtime_ns") != stamp:
            on_disk = set(self._task_folders())
            known = self._index.ids()
            for local_id in sorted(on_disk - known):
                self._reindex_one(local_id)
            for local_id in known - on_disk:
                self._index.delete(local_id)
            self._index.set_meta("root_mtime_ns", stamp)

    def _reindex_one(self, local_id: str) -> TaskRecord | None:
        self._remove_temp_files(local_id)
        record = self._refresh_row(local_id)
        if record is None and not self._record_path(local_id).exists():
            self._index.delete(local_id)
        return record

    def _refresh_row(self, local_id: str) -> TaskRecord | None:
        """Read the task's file and write its row as one step against other processes (see
        TaskIndex.refresh): another process may be writing this task at this very moment."""
        loaded: list[TaskRecord | None] = [None]

        def read() -> tuple | None:
            loaded[0] = self._load(local_id)
            return None if loaded[0] is None else row_values(loaded[0])

        self._index.refresh(read)
        return loaded[0]

    def _task_folders(self) -> list[str]:
        with os.scandir(self.root) as entries:
            return [e.name for e in entries if LOCAL_ID_RE.match(e.name) and e.is_dir()]

    def rebuild_index(self) -> int:
        """Re-read every task.toml into a fresh index; returns how many tasks it holds."""
        with self._lock:
            try:
                return self._rebuild()
            except Exception as exc:
                if not is_damage(exc):
                    raise
            self._set_index_aside()
            self._index.open()
            return self._rebuild()

    def _rebuild(self) -> int:
        stamp = str(root_mtime_ns(self.root))
        rows = []
        for local_id in self._task_folders():
            record = self._load(local_id)
            if record is not None:
                rows.append(row_values(record))
        self._index.clear()
        self._index.upsert_many(rows)
        self._index.set_meta("root_mtime_ns", stamp)
        return len(rows)

    # -- files -------------------------------------------------------------------------------

    def task_dir(self, local_id: str) -> Path:
        if not LOCAL_ID_RE.match(local_id):
            raise ValueError(f"not a task id: {local_id!r}")
        return self.root / local_id

    def _record_path(self, local_id: str) -> Path:
        return self.task_dir(local_id) / RECORD_FILE

    def _load(self, local_id: str) -> TaskRecord | None:
        """Read one task.toml; a damaged one is moved aside with a warning."""
        path = self._record_path(local_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            self._damaged(path, local_id, "not UTF-8 text")
            return None
        except OSError as exc:
            self.warnings.append(f"Task {local_id}: cannot read {RECORD_FILE}: {exc.strerror or exc}")
            return None
        try:
            record = record_from_toml(local_id, text)
        except RecordError as exc:
            if "newer than" in str(exc):
                self.warnings.append(f"Task {local_id}: {exc}; left as is and not shown.")
                return None
            self._damaged(path, local_id, str(exc))
            return None
        record.image_paths = self._contained(local_id, record.image_paths)
        return record

    def _contained(self, local_id: str, names: list[str]) -> list[str]:
        """The image names that stay inside the task's folder; a hand-edited `../../etc/x`, an
        absolute path or a symlink leading out is not one of the task's images."""
        kept = []
        for name in names:
            if self.image_file(local_id, name, must_exist=False) is not None:
                kept.append(name)
            elif (local_id, name) not in self._refused_images:
                self._refused_images.add((local_id, name))
                self.warnings.append(
                    f"Task {local_id}: image path {name!r} in {RECORD_FILE} is outside the task's folder; ignored."
                )
        return kept

    def image_file(self, local_id: str, name: str, *, must_exist: bool = True) -> Path | None:
        """`name` in the task's folder, or None when it leads out of it (or, with `must_exist`,
        is not a regular file there)."""
        # One file name, never a path: images are saved straight into the task's folder.
        if name in ("", ".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
            return None
        folder = self.task_dir(local_id)
        path = folder / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None if must_exist else path
        except (OSError, ValueError):  # ValueError: a NUL byte in the name
            return None
        if stat.S_ISLNK(info.st_mode):  # rare: the only way out left, so resolved only here
            real = os.path.realpath(path)
            if not real.startswith(os.path.realpath(folder) + os.sep):
                return None
            return path if not must_exist or os.path.isfile(real) else None
        return path if not must_exist or stat.S_ISREG(info.st_mode) else None

    def image_files(self, record: TaskRecord) -> list[Path]:
        """The task's saved images: regular files inside its folder, in the record's order."""
        found = (self.image_file(record.local_id, name) for name in record.image_paths)
        return [path for path in found if path is not None]

    def _damaged(self, path: Path, local_id: str, reason: str) -> None:
        try:
            moved = move_aside(path)
        except OSError as exc:
            self.warnings.append(
                f"Task {local_id}: {path} is damaged ({reason}) and could not be moved aside: {exc.strerror or exc}"
            )
            return
        self.warnings.append(
            f"Task {local_id}: {path} was damaged ({reason}); moved it to {moved} (fix it and rename it back"
            f" to {RECORD_FILE} to see the task again)."
        )

    def _remove_temp_files(self, local_id: str) -> None:
        # Only provably abandoned ones: another process may be writing this task right now.
        try:
            for leftover in temp_files(self._record_path(local_id)):
                if is_abandoned(leftover):
                    leftover.unlink(missing_ok=True)
        except OSError:
            pass

    # -- records -----------------------------------------------------------------------------

    def new_record(
        self,
        kind: str,
        params: Mapping[str, Any],
        external_task_id: str | None = None,
        parents: Sequence[tuple[str, int]] = (),
        *,
        owner: str | None = None,
        status: str = "pending",
        template: tuple[str, Sequence[tuple[str, str]]] | None = None,
    ) -> TaskRecord:
        """Record a task before it is sent (status "pending"), so a crash never loses it.

        `parents` are (local id, 1-based image index) of the history images it was made from;
        `template` the prompt template it was filled from and each slot's value.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown task kind {kind!r}")
        with self._lock:
            while True:
                now = time.time()
                local_id = new_local_id(now)
                try:
                    self.task_dir(local_id).mkdir()
                    break
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise self._write_failed(storage_error("write the history", self.root, exc)) from exc
            record = TaskRecord(
                local_id=local_id,
                kind=kind,
                params=_clean_params(params),
                external_task_id=external_task_id or uuid.uuid4().hex,
                created_at=now,
                parents=[{"local_id": parent, "image": image} for parent, image in parents],
                owner=owner,
                status=status,
                template=template[0] if template else None,
                template_values=dict(template[1]) if template else {},
            )
            try:
                self._save(record, new_folder=True)
            except BaseException:
                self._remove_folder(local_id)  # not recorded means nothing left behind
                raise
            self.created.append(local_id)
            return record

    def save(self, record: TaskRecord) -> None:
        """Write the record's TOML (atomically) and its index row."""
        with self._lock:
            folder = self.task_dir(record.local_id)
            new_folder = not folder.is_dir()
            try:
                folder.mkdir(exist_ok=True)
            except OSError as exc:
                raise self._write_failed(storage_error("write the history", folder, exc)) from exc
            self._save(record, new_folder=new_folder)

    def _save(self, record: TaskRecord, *, new_folder: bool) -> None:
        if not is_storable_status(record.status):
            raise ValueError(f"not a storable task status {record.status!r}")
        for name in _TIME_FIELDS:
            setattr(record, name, _normalise_time(getattr(record, name)))
        record.params = _clean_params(record.params)
        data = record_to_toml(record).encode("utf-8")
        path = self._record_path(record.local_id)
        try:
            self._guarded(lambda: self._index.mark_dirty(record.local_id))
            write_atomic(path, data)
            stamp = root_mtime_ns(self.root) if new_folder else None
            self._guarded(lambda: self._index.upsert(row_values(record), root_mtime_ns=stamp))
        except OSError as exc:
            raise self._write_failed(storage_error("write the history", path, exc)) from exc

    def _write_failed(self, error: StorageError) -> StorageError:
        if self.on_write_error is not None:
            self.on_write_error(error)
        return error

    def _remove_folder(self, local_id: str) -> None:
        """Delete a task's folder and index row, as far as the disk allows (a full disk does)."""
        folder = self.task_dir(local_id)
        try:
            for entry in folder.iterdir():
                entry.unlink()
            folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            return
        try:
            self._guarded(lambda: self._index.delete(local_id))
        except Exception:
            pass  # a dirty mark or row of a folder that is gone is dropped on the next start

    def discard_unsent(self, local_id: str) -> TaskRecord | None:
        """Delete a task this process recorded but never sent (still queued, or not written
        at all), after history stopped being writable: marking it "not created" would need a
        write, and left queued it would be sent by the next start.

        Returns the record left in history, or None when none is.
        """
        try:
            text = self._record_path(local_id).read_text(encoding="utf-8")
            record = record_from_toml(local_id, text)
        except FileNotFoundError:
            record = None
        except (OSError, UnicodeDecodeError, RecordError):
            return TaskRecord(local_id=local_id, kind="generation", params={}, external_task_id="", status="")
        if record is not None and record.status != "queued":
            return record
        self._remove_folder(local_id)
        return record if self.task_dir(local_id).exists() else None

    def update(self, local_id: str, **changes: Any) -> TaskRecord:
        unknown = set(changes) - _RECORD_FIELDS
        if unknown or "local_id" in changes:
            raise TypeError(f"cannot update {', '.join(sorted(unknown or {'local_id'}))}")
        with self._lock:
            record = self.get(local_id)
            if record is None:
                raise KeyError(local_id)
            for name, value in changes.items():
                setattr(record, name, value)
            self.save(record)
            return record

    def claim(self, local_id: str, owner: str, *, status: str, from_owner: str | None) -> TaskRecord | None:
        """Make `owner` the task's owner if it still has `status` and belongs to `from_owner`, as
        one step across processes (a turn on the task's folder): of two processes taking over a
        task left by one that ended, exactly one gets it. None when it is no longer there to take."""
        with self._lock:
            try:
                with exclusive(self.task_dir(local_id)):
                    record = self._load(local_id)  # the file as it is now, not as the index had it
                    if record is None or record.status != status or record.owner != from_owner:
                        return None
                    record.owner = owner
                    self.save(record)
                    return record
            except FileNotFoundError:
                return None

    def get(self, local_id: str) -> TaskRecord | None:
        """The full record, read from its TOML; the index row is refreshed if it was stale."""
        if not LOCAL_ID_RE.match(local_id):
            return None
        with self._lock:
            record = self._load(local_id)
            if record is None:
                # Gone or set aside: drop its row. Unreadable for now, or newer: keep it.
                if not self._record_path(local_id).exists():
                    self._guarded(lambda: self._index.delete(local_id))
                return None
            if self._guarded(lambda: self._index.stored_values(local_id)) != row_values(record):
                record = self._guarded(lambda: self._refresh_row(local_id)) or record
            return record

    # -- queries (index only) ------------------------------------------------------------------

    def recent(
        self,
        limit: int = 200,
        offset: int = 0,
        *,
        text: str | None = None,
        status: str | Sequence[str] | None = None,
        starred: bool | None = None,
        words: str | None = None,
    ) -> list[TaskRow]:
        """Newest first. `words`: full-text search (prompt, negative prompt, note, failure message, model,
        ids, template values)."""
        return self._guarded(
            lambda: self._index.recent(limit, offset, text=text, status=status, starred=starred, words=words)
        )

    def count(
        self,
        *,
        text: str | None = None,
        status: str | Sequence[str] | None = None,
        starred: bool | None = None,
        words: str | None = None,
    ) -> int:
        return self._guarded(lambda: self._index.count(text=text, status=status, starred=starred, words=words))

    def active(self) -> list[TaskRecord]:
        """Tasks not yet final, oldest first: the ones to resume tracking on start."""
        ids = self._guarded(lambda: self._index.ids_without_status(FINAL_LOCAL_STATUSES))
        records = (self.get(local_id) for local_id in ids)
        return [r for r in records if r is not None and r.is_active]

    def find_by_task_id(self, task_id: str) -> TaskRecord | None:
        local_id = self._guarded(lambda: self._index.id_where("task_id", task_id))
        return self.get(local_id) if local_id else None

    def find_by_external_id(self, external_task_id: str) -> TaskRecord | None:
        local_id = self._guarded(lambda: self._index.id_where("external_task_id", external_task_id))
        return self.get(local_id) if local_id else None

    def children(self, local_id: str) -> list[TaskRow]:
        """Tasks made from one of this task's images (lineage), oldest first."""
        return self._guarded(lambda: self._index.children(local_id))

    def unit_totals(self) -> list[tuple[str, str, int, int, float]]:
        """Units spent: (local day, model, finished tasks, images, units), newest day first."""
        return self._guarded(self._index.unit_totals)

    def prompts(self, limit: int = 500) -> list[str]:
        """Distinct past prompts, newest first."""

        def collect() -> list[str]:
            seen: dict[str, None] = {}
            for prompt in self._index.prompts_newest_first():
                seen.setdefault(prompt)
                if len(seen) >= limit:
                    break
            return list(seen)

        return self._guarded(collect)

    def close(self) -> None:
        with self._lock:
            self._index.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
