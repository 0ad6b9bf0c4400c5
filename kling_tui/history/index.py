"""The derived SQLite index of the task history.

It holds only what the task table shows, so that listing the newest tasks costs the same at
100,000 tasks as at 10. The TOML files stay the source of truth: this file can be deleted at
any time and is rebuilt from them.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kling_tui.base.atomic import exclusive

# 2: the parents column (lineage); 3: full-text search (tasks_fts); 4: template values in it
INDEX_VERSION = 4
# The index holds every prompt. SQLite gives its -wal and -shm files the main file's mode.
FILE_MODE = 0o600

ACTIVE_STATUSES = ("pending", "queued", "submitted", "processing")
FINAL_LOCAL_STATUSES = ("succeed", "failed", "not_created", "error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    local_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    kind TEXT NOT NULL,
    model TEXT,
    prompt TEXT NOT NULL,
    n INTEGER NOT NULL,
    aspect_ratio TEXT,
    status TEXT NOT NULL,
    status_msg TEXT NOT NULL,
    task_id TEXT,
    units TEXT,
    starred INTEGER NOT NULL,
    finished_at REAL,
    image_count INTEGER NOT NULL,
    grp TEXT,
    external_task_id TEXT,
    search TEXT NOT NULL,
    fulltext TEXT NOT NULL,
    fts_key INTEGER,
    parents TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_newest ON tasks (created_at DESC, local_id DESC);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, created_at DESC);
CREATE INDEX IF NOT EXISTS tasks_task_id ON tasks (task_id);
CREATE INDEX IF NOT EXISTS tasks_external ON tasks (external_task_id);
CREATE INDEX IF NOT EXISTS tasks_fts_key ON tasks (fts_key);
-- Lineage, parent -> child, kept in step with tasks.parents: finds a task's children by index.
CREATE TABLE IF NOT EXISTS lineage (parent TEXT NOT NULL, child TEXT NOT NULL, PRIMARY KEY (parent, child));
CREATE INDEX IF NOT EXISTS lineage_child ON lineage (child);
-- Tasks whose TOML may be newer than their row: a write began and did not finish.
CREATE TABLE IF NOT EXISTS dirty (local_id TEXT PRIMARY KEY);
-- Full-text search. rowid = tasks.fts_key, the creation time in microseconds: FTS5 then
-- hands out the newest matches first and stops at a page. Prefix indexes make a search
-- that is still being typed ("a", "fo") as cheap as a whole word.
CREATE VIRTUAL TABLE IF NOT EXISTS tasks_fts USING fts5(
    prompt, negative_prompt, note, status_msg, other, template,
    tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2'
);
"""

# Column order of the tasks table; the first 15 are TaskRow's fields.
_COLUMNS = (
    "local_id",
    "created_at",
    "kind",
    "model",
    "prompt",
    "n",
    "aspect_ratio",
    "status",
    "status_msg",
    "task_id",
    "units",
    "starred",
    "finished_at",
    "image_count",
    "grp",
    "external_task_id",
    "search",
    "fulltext",
    "parents",
)
_ROW_COLUMNS = ", ".join(_COLUMNS[:15])
_UPSERT = (
    f"INSERT OR REPLACE INTO tasks ({', '.join(_COLUMNS)}, fts_key) VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})"
)


@dataclass(frozen=True)
class TaskRow:
    """One line of the task table, read from the index (never from TOML)."""

    local_id: str
    created_at: float
    kind: str
    model: str | None
    prompt: str
    n: int
    aspect_ratio: str | None
    status: str
    status_msg: str
    task_id: str | None
    units: str | None
    starred: bool
    finished_at: float | None
    image_count: int
    group: str | None

    @property
    def is_active(self) -> bool:
        return self.status not in FINAL_LOCAL_STATUSES

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_LOCAL_STATUSES

    @classmethod
    def from_db(cls, values: Sequence[Any]) -> TaskRow:
        values = list(values)
        values[11] = bool(values[11])
        return cls(*values)


def row_values(record: Any) -> tuple:
    """The index columns of a TaskRecord, in `_COLUMNS` order."""
    prompt = record.prompt
    model = record.model
    image_count = len(record.image_urls) or len(record.image_paths)
    search = "\n".join((prompt, model or "", record.task_id or "")).casefold()
    negative = record.params.get("negative_prompt")
    other = (model or "", record.task_id or "", record.external_task_id or "")
    parts = (prompt, negative if isinstance(negative, str) else "", record.note or "", record.status_msg or "")
    template = " ".join(getattr(record, "template_values", {}).values())
    fulltext = _FIELD_SEP.join(part.replace(_FIELD_SEP, " ") for part in (*parts, " ".join(other), template))
    # " id:image " per parent (see _lineage_rows).
    parents = "".join(f" {p['local_id']}:{p['image']} " for p in getattr(record, "parents", ()))
    return (
        record.local_id,
        record.created_at,
        record.kind,
        model,
        prompt,
        record.n,
        record.aspect_ratio,
        record.status,
        record.status_msg,
        record.task_id,
        record.units,
        int(record.starred),
        record.finished_at,
        image_count,
        record.group,
        record.external_task_id,
        search,
        fulltext,
        parents,
    )


def _lineage_rows(values: tuple) -> list[tuple[str, str]]:
    """(parent, child) pairs of one row's parents column."""
    return list(dict.fromkeys((item.rsplit(":", 1)[0], values[0]) for item in values[-1].split()))


# -- full-text search -----------------------------------------------------------------------

_FIELD_SEP = "\x1f"  # between the fulltext column's parts, one per column of tasks_fts
_FTS_COLUMNS = "prompt, negative_prompt, note, status_msg, other, template"
_FTS_INSERT = f"INSERT INTO tasks_fts (rowid, {_FTS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_WORD = re.compile(r"\w+")


def _fold(text: str) -> str:
    # What the unicode61 tokenizer does with remove_diacritics: casefold and drop accents.
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def search_terms(words: str) -> list[str]:
    """The words of a search, as the index compares them; each matches words starting with it."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(_fold(words)):
        seen.setdefault(word)
    return list(seen)


def fts_query(words: str) -> str | None:
    """A MATCH expression: every term, as a prefix, anywhere in the task. None when no terms."""
    terms = search_terms(words)
    return " ".join(f'"{term}"*' for term in terms) if terms else None


def matches_words(words: str, texts: Iterable[str]) -> bool:
    """What the index would answer for one task: every term starts a word of `texts`."""
    terms = search_terms(words)
    if not terms:
        return True
    found = set(_WORD.findall(_fold(" ".join(texts))))
    return all(any(word.startswith(term) for word in found) for term in terms)


def record_texts(record: Any) -> list[str]:
    """The parts of a record that search looks at (the same as the index's fulltext)."""
    return row_values(record)[_COLUMNS.index("fulltext")].split(_FIELD_SEP)


class IndexDamaged(Exception):
    """The index file is not a readable SQLite database."""


BUSY_TIMEOUT = 10.0  # seconds a statement waits for another process's lock


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL. Changing the mode needs the file to itself and SQLite does not
    wait for that (no busy handler): processes opening a fresh file together take turns here."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def is_damage(exc: BaseException) -> bool:
    """A corrupt file, as opposed to a busy database or a programming error."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return False
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text
    return True


# SQLite's errors carry no errno. These names say why the disk refused; for those starting
# with the prefixes below, the file system is asked (read-only? full?).
_STORAGE_ERRORS = {"SQLITE_FULL": errno.ENOSPC, "SQLITE_PERM": errno.EACCES}
_STORAGE_ERROR_PREFIXES = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR")


def storage_cause(exc: BaseException) -> OSError | None:
    """For an SQLite error that means the disk is read-only, full or failing: an OSError
    saying so (errno set when known). None for anything else (damage, a busy database)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name in _STORAGE_ERRORS or "disk is full" in text:
        return OSError(_STORAGE_ERRORS.get(name, errno.ENOSPC), str(exc))
    if name.startswith(_STORAGE_ERROR_PREFIXES) or "readonly" in text or "unable to open" in text:
        return OSError(str(exc))
    return None


class TaskIndex:
    """A thin typed layer over the SQLite file; the caller serialises access."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> str:
        """Open the file; returns "ok", "new" (empty: needs a rebuild) or "version" (unknown).

        Raises IndexDamaged when the file is not a database.
        """
        if self._open(create=False) == "ok":  # the usual case: ready to use, nothing to write
            return "ok"
        # Processes starting side by side on one history take turns here: one of them resets
        # an unknown index and creates the tables; the others then find them ready. Without
        # the turn, one could delete the files another has just opened.
        with exclusive(Path(f"{self.path}.lock"), mode=FILE_MODE):
            return self._open(create=True)

    def _open(self, *, create: bool) -> str:
        """Connect and read the index's state; with `create`, make it ready: reset an unknown
        version, fill a new file in place. Keeps the connection only when the index is ready."""
        self._make_private()
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT)
        except sqlite3.DatabaseError as exc:
            raise IndexDamaged(str(exc)) from exc
        try:
            _use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            state = "ok"
            if "meta" not in tables:
                state = "new" if not tables else "version"
            else:
                row = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
                if row is None or row[0] != str(INDEX_VERSION):
                    state = "version"
        except sqlite3.DatabaseError as exc:
            conn.close()
            if is_damage(exc):
                raise IndexDamaged(str(exc)) from exc
            raise
        if state == "ok":
            self._conn = conn
            return state
        if not create:
            conn.close()
            return state
        if state == "version":  # a new, empty file needs no reset: the tables go into it
            conn.close()
            self._remove_files()
            self._make_private()
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT)
            _use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(INDEX_VERSION),))
        self._conn = conn
        return state

    def _make_private(self) -> None:
        """Create the file 0600 before SQLite does (it would use 0644); narrow an older one."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.close(fd)
        for suffix in ("", "-wal", "-shm"):
            try:
                path = f"{self.path}{suffix}"
                if os.stat(path).st_mode & 0o077:
                    os.chmod(path, FILE_MODE)
            except OSError:
                pass  # gone, or not ours to change: opening it says what is wrong

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def discard_sidecars(self) -> None:
        """Drop the WAL files of a damaged index (the main file has been moved aside)."""
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the history index is closed")
        return self._conn

    # -- writes ----------------------------------------------------------------------------

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    def mark_dirty(self, local_id: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO dirty VALUES (?)", (local_id,))

    def dirty_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT local_id FROM dirty")]

    def upsert(self, values: tuple, *, root_mtime_ns: int | None = None) -> None:
        """Write one row and clear its dirty mark, in one transaction."""
        with self.transaction() as conn:
            _upsert_row(conn, values)
            conn.execute("DELETE FROM dirty WHERE local_id = ?", (values[0],))
            if root_mtime_ns is not None:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('root_mtime_ns', ?)", (str(root_mtime_ns),))

    def refresh(self, read: Callable[[], tuple | None]) -> None:
        """Write one row from `read()` (its task's file, read now) while holding the index's write
        lock, and clear its dirty mark. A writer upserts its row only after writing its file, so
        its newer row can never be overwritten by a read of the file from before that write.
        None from `read` writes nothing."""
        with self.transaction() as conn:
            values = read()
            if values is None:
                return
            _upsert_row(conn, values)
            conn.execute("DELETE FROM dirty WHERE local_id = ?", (values[0],))

    def upsert_many(self, rows: Iterable[tuple]) -> None:
        rows = list(rows)
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM tasks LIMIT 1").fetchone() is None:
                _insert_all(conn, rows)  # a rebuild: nothing to replace, so in bulk
                return
            for values in rows:
                _upsert_row(conn, values)

    def delete(self, local_id: str) -> None:
        with self.transaction() as conn:
            _delete_fts(conn, local_id)
            conn.execute("DELETE FROM tasks WHERE local_id = ?", (local_id,))
            conn.execute("DELETE FROM lineage WHERE child = ?", (local_id,))
            conn.execute("DELETE FROM dirty WHERE local_id = ?", (local_id,))

    def clear(self) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM tasks")
            conn.execute("DELETE FROM tasks_fts")
            conn.execute("DELETE FROM lineage")
            conn.execute("DELETE FROM dirty")

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- reads -----------------------------------------------------------------------------

    def stored_values(self, local_id: str) -> tuple | None:
        row = self.conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE local_id = ?", (local_id,)).fetchone()
        return tuple(row) if row else None

    def ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT local_id FROM tasks")}

    def recent(
        self,
        limit: int,
        offset: int,
        *,
        text: str | None = None,
        status: str | Sequence[str] | None = None,
        starred: bool | None = None,
        words: str | None = None,
    ) -> list[TaskRow]:
        query = fts_query(words) if words else None
        if query and not (text or status or starred is not None):
            # Words alone: the newest page straight from the full-text index.
            sql = (
                f"SELECT {_ROW_COLUMNS} FROM tasks WHERE fts_key IN (SELECT rowid FROM tasks_fts"
                " WHERE tasks_fts MATCH ? ORDER BY rowid DESC LIMIT ? OFFSET ?) ORDER BY created_at DESC, local_id DESC"
            )
            return [TaskRow.from_db(r) for r in self.conn.execute(sql, (query, limit, offset))]
        where, args = _filters(text, status, starred, words)
        sql = f"SELECT {_ROW_COLUMNS} FROM tasks{where} ORDER BY created_at DESC, local_id DESC LIMIT ? OFFSET ?"
        return [TaskRow.from_db(r) for r in self.conn.execute(sql, (*args, limit, offset))]

    def count(self, *, text=None, status=None, starred=None, words=None) -> int:
        query = fts_query(words) if words else None
        if query and not (text or status or starred is not None):
            return self.conn.execute("SELECT COUNT(*) FROM tasks_fts WHERE tasks_fts MATCH ?", (query,)).fetchone()[0]
        where, args = _filters(text, status, starred, words)
        return self.conn.execute(f"SELECT COUNT(*) FROM tasks{where}", args).fetchone()[0]

    def ids_with_status(self, statuses: Sequence[str]) -> list[str]:
        marks = ", ".join("?" * len(statuses))
        sql = f"SELECT local_id FROM tasks WHERE status IN ({marks}) ORDER BY created_at, local_id"
        return [r[0] for r in self.conn.execute(sql, tuple(statuses))]

    def ids_without_status(self, statuses: Sequence[str]) -> list[str]:
        """Oldest first. As ranges between the excluded values, so the status index serves
        (NOT IN would scan every row); `+` keeps the planner off the newest-first index."""
        clauses, args = [], []
        previous = None
        for value in sorted(set(statuses)):
            clauses.append("status < ?" if previous is None else "(status > ? AND status < ?)")
            args += [value] if previous is None else [previous, value]
            previous = value
        if previous is not None:
            clauses.append("status > ?")
            args.append(previous)
        where = " OR ".join(clauses) or "1"
        sql = f"SELECT local_id FROM tasks WHERE {where} ORDER BY +created_at, +local_id"
        return [r[0] for r in self.conn.execute(sql, tuple(args))]

    def id_where(self, column: str, value: str) -> str | None:
        assert column in ("task_id", "external_task_id")
        sql = f"SELECT local_id FROM tasks WHERE {column} = ? ORDER BY created_at DESC LIMIT 1"
        row = self.conn.execute(sql, (value,)).fetchone()
        return row[0] if row else None

    def children(self, local_id: str) -> list[TaskRow]:
        """Tasks made from an image of `local_id`, oldest first."""
        columns = ", ".join(f"tasks.{c}" for c in _COLUMNS[:15])
        sql = (
            f"SELECT {columns} FROM lineage JOIN tasks ON tasks.local_id = lineage.child"
            " WHERE lineage.parent = ? ORDER BY tasks.created_at, tasks.local_id"
        )
        return [TaskRow.from_db(r) for r in self.conn.execute(sql, (local_id,))]

    def unit_totals(self) -> list[tuple[str, str, int, int, float]]:
        """(local day, model, tasks, images, units) of finished tasks, newest day first."""
        sql = (
            "SELECT date(created_at, 'unixepoch', 'localtime') AS day, COALESCE(model, ''), COUNT(*),"
            " SUM(CASE WHEN status = 'succeed' THEN n ELSE 0 END), SUM(CAST(COALESCE(units, '0') AS REAL))"
            " FROM tasks WHERE status IN ('succeed', 'failed') GROUP BY day, model ORDER BY day DESC, model"
        )
        return [tuple(r) for r in self.conn.execute(sql)]

    def prompts_newest_first(self) -> Iterator[str]:
        yield from (
            r[0]
            for r in self.conn.execute(
                "SELECT prompt FROM tasks WHERE prompt != '' ORDER BY created_at DESC, local_id DESC"
            )
        )


def _upsert_row(conn: sqlite3.Connection, values: tuple) -> None:
    _delete_fts(conn, values[0])
    key = round(values[_COLUMNS.index("created_at")] * 1_000_000)
    while conn.execute("SELECT 1 FROM tasks_fts WHERE rowid = ?", (key,)).fetchone():
        key += 1  # two tasks created in the same microsecond
    conn.execute(_UPSERT, (*values, key))
    parts = values[_COLUMNS.index("fulltext")].split(_FIELD_SEP)
    conn.execute(_FTS_INSERT, (key, *parts))
    conn.execute("DELETE FROM lineage WHERE child = ?", (values[0],))
    conn.executemany("INSERT OR IGNORE INTO lineage VALUES (?, ?)", _lineage_rows(values))


def _insert_all(conn: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    keyed, fts, used = [], [], set()
    created, fulltext = _COLUMNS.index("created_at"), _COLUMNS.index("fulltext")
    # Oldest first: FTS5 and the b-trees take ascending keys several times faster than random ones.
    for values in sorted(rows, key=lambda v: (v[created], v[0])):
        key = round(values[created] * 1_000_000)
        while key in used:
            key += 1
        used.add(key)
        keyed.append((*values, key))
        fts.append((key, *values[fulltext].split(_FIELD_SEP)))
    conn.executemany(_UPSERT, keyed)
    conn.executemany(_FTS_INSERT, fts)
    conn.executemany(
        "INSERT OR IGNORE INTO lineage VALUES (?, ?)", (pair for values in keyed for pair in _lineage_rows(values[:-1]))
    )


def _delete_fts(conn: sqlite3.Connection, local_id: str) -> None:
    old = conn.execute("SELECT fts_key FROM tasks WHERE local_id = ?", (local_id,)).fetchone()
    if old is not None and old[0] is not None:
        conn.execute("DELETE FROM tasks_fts WHERE rowid = ?", (old[0],))


def _filters(text, status, starred, words=None) -> tuple[str, tuple]:
    clauses: list[str] = []
    args: list[Any] = []
    query = fts_query(words) if words else None
    if query:
        clauses.append("fts_key IN (SELECT rowid FROM tasks_fts WHERE tasks_fts MATCH ?)")
        args.append(query)
    if text:
        # instr on a casefolded copy: case-insensitive beyond ASCII, and no LIKE wildcards to escape.
        clauses.append("instr(search, ?) > 0")
        args.append(text.casefold())
    if status:
        statuses = (status,) if isinstance(status, str) else tuple(status)
        clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
        args.extend(statuses)
    if starred is not None:
        clauses.append("starred = ?")
        args.append(int(starred))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def root_mtime_ns(root: Path) -> int:
    return os.stat(root).st_mtime_ns
