"""The task history: TOML files as the source of truth, a SQLite index for the table."""

from __future__ import annotations

import os
import sqlite3
import tomllib

import pytest

from benchmarks.fixtures import populate
from kling_tui.api.types import GenerationRequest, MultiImageRequest
from kling_tui.base import locations
from kling_tui.history.store import HistoryStore, TaskRecord, TaskRow


@pytest.fixture
def store():
    with HistoryStore() as s:
        yield s


def _params(prompt="a lighthouse at dawn", **extra):
    return GenerationRequest(prompt=prompt, model_name="kling-v1", n=2, aspect_ratio="16:9", **extra).params()


def test_new_record_is_written_at_once_and_reads_back_equal(store):
    record = store.new_record("generation", _params())
    assert record.status == "pending"
    assert len(record.external_task_id) == 32
    assert (locations.history_dir() / record.local_id / "task.toml").is_file()
    assert store.get(record.local_id) == record
    assert (record.prompt, record.model, record.n, record.aspect_ratio) == (
        "a lighthouse at dawn",
        "kling-v1",
        2,
        "16:9",
    )
    assert record.is_active and not record.is_final


def test_full_record_roundtrips_through_a_restart(store):
    record = store.new_record(
        "multi", MultiImageRequest(subject_images=["a.png", "b.png"], prompt="two cats").params(), "ext-1"
    )
    record.status = "succeed"
    record.task_id = "860000000000000001"
    record.submitted_at = record.created_at + 0.5
    record.finished_at = record.created_at + 20.123456789
    record.units = "4"
    record.image_urls = ["https://cdn.invalid/1.png", "https://cdn.invalid/2.png"]
    record.image_paths = ["1.png", "2.png"]
    record.error_code = None
    record.starred = True
    record.note = 'keeps "quotes" and\nnew lines'
    record.group = "cats"
    store.save(record)
    store.close()

    with HistoryStore() as again:
        loaded = again.get(record.local_id)
        assert loaded == record
        assert loaded.params["subject_images"] == ["a.png", "b.png"]
        row = again.recent(1)[0]
        assert isinstance(row, TaskRow)
        assert (row.kind, row.prompt, row.status, row.units, row.starred, row.image_count, row.group) == (
            "multi",
            "two cats",
            "succeed",
            "4",
            True,
            2,
            "cats",
        )
        assert again.find_by_task_id("860000000000000001") == record
        assert again.find_by_external_id("ext-1") == record
        assert again.find_by_task_id("nope") is None


def test_update_changes_fields_and_the_table_row(store):
    record = store.new_record("generation", _params())
    updated = store.update(record.local_id, status="processing", task_id="42")
    assert updated.status == "processing" and store.get(record.local_id).task_id == "42"
    assert store.recent(1)[0].status == "processing"
    with pytest.raises(TypeError):
        store.update(record.local_id, colour="red")
    with pytest.raises(KeyError):
        store.update("20200101-000000-00000000", status="failed")


def test_many_records_survive_restart_newest_first(store):
    ids = [store.new_record("generation", _params(f"prompt {i}")).local_id for i in range(12)]
    store.close()
    with HistoryStore() as again:
        assert [row.local_id for row in again.recent()] == ids[::-1] == sorted(ids, reverse=True)
        assert again.count() == 12
        assert [row.prompt for row in again.recent(3, offset=2)] == ["prompt 9", "prompt 8", "prompt 7"]


def test_filters_by_text_status_and_star(store):
    a = store.new_record("generation", _params("Ein großer Hund"))
    b = store.new_record("generation", _params("a small cat"))
    c = store.new_record("generation", {"prompt": "cat on a roof", "model_name": "kling-v2"})
    store.update(a.local_id, status="succeed", starred=True, task_id="7001")
    store.update(b.local_id, status="failed", status_msg="risk control")
    assert [r.local_id for r in store.recent(text="CAT")] == [c.local_id, b.local_id]
    assert [r.local_id for r in store.recent(text="GROSSER".lower().replace("ss", "ß"))] == [a.local_id]
    assert [r.local_id for r in store.recent(text="KLING-V2")] == [c.local_id]
    assert [r.local_id for r in store.recent(text="7001")] == [a.local_id]
    assert [r.local_id for r in store.recent(status="failed")] == [b.local_id]
    assert {r.local_id for r in store.recent(status=("failed", "succeed"))} == {a.local_id, b.local_id}
    assert [r.local_id for r in store.recent(starred=True)] == [a.local_id]
    assert store.count(text="cat", status="pending") == 1
    assert store.count(text="%") == 0  # no LIKE wildcards
    assert [r.local_id for r in store.active()] == [c.local_id]


def test_prompts_are_distinct_newest_first(store):
    for prompt in ["one", "two", "one", "", "three"]:
        store.new_record("generation", {"prompt": prompt} if prompt else {})
    assert store.prompts() == ["three", "one", "two"]
    assert store.prompts(limit=2) == ["three", "one"]


def test_record_file_is_human_readable_and_holds_no_credentials(store):
    params = _params() | {"api_key": "sk-SECRET", "secret_key": "SECRET2", "access_key": "AK"}
    record = store.new_record("generation", params)
    text = (store.task_dir(record.local_id) / "task.toml").read_text()
    assert "SECRET" not in text and '"AK"' not in text
    for key in ("api_key", "secret_key", "access_key"):
        assert key not in text
    data = tomllib.loads(text)
    assert data["schema_version"] == 1
    assert data["status"] == "pending"
    assert data["params"]["prompt"] == "a lighthouse at dawn"
    assert data["created_at"].year >= 2024  # a real TOML date, not an opaque number
    assert 'prompt = "a lighthouse at dawn"' in text


def test_writes_leave_no_temp_files_and_always_parse(store):
    record = store.new_record("generation", _params())
    path = store.task_dir(record.local_id) / "task.toml"
    for i in range(30):
        store.update(record.local_id, status_msg=f"step {i}" * (i % 5))
        assert tomllib.loads(path.read_text())["local_id"] == record.local_id
    assert sorted(p.name for p in path.parent.iterdir()) == ["task.toml"]


def test_damaged_record_is_moved_aside_with_a_warning(store):
    good = store.new_record("generation", _params("good"))
    bad = store.new_record("generation", _params("bad"))
    wrong_type = store.new_record("generation", _params("wrong type"))
    store.close()
    (locations.history_dir() / bad.local_id / "task.toml").write_text("kind = \n[[[ broken")
    (locations.history_dir() / wrong_type.local_id / "task.toml").write_text(
        'schema_version = 1\nkind = "generation"\ncreated_at = "yesterday"\n'
    )
    os.remove(locations.data_dir() / "index.sqlite3")

    with HistoryStore() as again:
        assert [r.local_id for r in again.recent()] == [good.local_id]
        assert len(again.warnings) == 2
        assert any(bad.local_id in w and "damaged" in w for w in again.warnings)
        for broken in (bad, wrong_type):
            leftovers = [p.name for p in (locations.history_dir() / broken.local_id).iterdir()]
            assert len(leftovers) == 1 and leftovers[0].startswith("task.toml.damaged-")
        assert again.get(good.local_id).prompt == "good"


def test_damage_found_on_get_drops_the_row_and_warns(store):
    record = store.new_record("generation", _params())
    (store.task_dir(record.local_id) / "task.toml").write_bytes(b"\xff\xfe not text")
    assert store.get(record.local_id) is None
    assert store.count() == 0
    assert record.local_id in store.warnings[0]


def test_deleted_index_is_rebuilt_from_toml(store):
    ids = [store.new_record("generation", _params(f"p{i}")).local_id for i in range(5)]
    store.update(ids[0], status="succeed", starred=True)
    store.close()
    for suffix in ("", "-wal", "-shm"):
        (locations.data_dir() / f"index.sqlite3{suffix}").unlink(missing_ok=True)
    with HistoryStore() as again:
        assert [r.local_id for r in again.recent()] == ids[::-1]
        assert again.recent(starred=True)[0].local_id == ids[0]
        assert again.warnings == []


def test_damaged_index_is_moved_aside_and_rebuilt(store):
    ids = [store.new_record("generation", _params(f"p{i}")).local_id for i in range(3)]
    store.close()
    index = locations.data_dir() / "index.sqlite3"
    for suffix in ("-wal", "-shm"):
        (locations.data_dir() / f"index.sqlite3{suffix}").unlink(missing_ok=True)
    index.write_bytes(b"this is not a database at all" * 200)
    with HistoryStore() as again:
        assert [r.local_id for r in again.recent()] == ids[::-1]
        assert "damaged" in again.warnings[0]
    assert [p.name for p in locations.data_dir().glob("index.sqlite3.damaged-*")]


def test_index_of_another_version_is_rebuilt(store):
    record = store.new_record("generation", _params())
    store.close()
    with sqlite3.connect(locations.data_dir() / "index.sqlite3") as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'version'")
        conn.execute("DELETE FROM tasks")
    conn.close()
    with HistoryStore() as again:
        assert [r.local_id for r in again.recent()] == [record.local_id]


def test_unfinished_write_is_caught_up_on_start(store):
    """A crash after task.toml was replaced but before the index row: the next start re-reads it."""
    record = store.new_record("generation", _params())
    store._index.mark_dirty(record.local_id)
    path = store.task_dir(record.local_id) / "task.toml"
    path.write_text(path.read_text().replace('status = "pending"', 'status = "failed"'))
    store.close()
    with HistoryStore() as again:
        assert again.recent()[0].status == "failed"


def test_folders_added_or_removed_by_hand_are_noticed(store, tmp_path):
    kept = store.new_record("generation", _params("kept"))
    moved = store.new_record("generation", _params("moved"))
    store.close()
    os.rename(locations.history_dir() / moved.local_id, tmp_path / moved.local_id)
    with HistoryStore() as again:
        assert [r.local_id for r in again.recent()] == [kept.local_id]
    os.rename(tmp_path / moved.local_id, locations.history_dir() / moved.local_id)
    with HistoryStore() as again:
        assert [r.local_id for r in again.recent()] == [moved.local_id, kept.local_id]


def test_newest_200_of_20000(store):
    ids = populate(store, 20_000, seed=7)
    newest = store.new_record("generation", _params("the newest"))
    rows = store.recent(200)
    assert len(rows) == 200
    assert rows[0].local_id == newest.local_id
    assert [r.local_id for r in rows[1:]] == ids[::-1][:199]
    assert store.count() == 20_001
    sample = store.get(ids[-1])
    assert sample.status in ("succeed", "failed") and sample.is_final
    assert rows[1] == TaskRow(**{f: getattr(rows[1], f) for f in TaskRow.__dataclass_fields__})


def test_populate_writes_the_same_format_as_save(store):
    (local_id,) = populate(store, 1, seed=3)
    record = store.get(local_id)
    path = store.task_dir(local_id) / "task.toml"
    before = path.read_text()
    store.save(record)
    assert path.read_text() == before
    assert isinstance(record, TaskRecord)


def test_record_from_a_newer_version_is_left_alone_with_a_warning(store):
    record = store.new_record("generation", _params())
    path = store.task_dir(record.local_id) / "task.toml"
    newer = path.read_text().replace("schema_version = 1", "schema_version = 99")
    path.write_text(newer)
    assert store.get(record.local_id) is None
    assert "newer" in store.warnings[0]
    assert path.read_text() == newer
    assert store.rebuild_index() == 0
