"""The history index finds what was made from a task (its children), and rebuilds that from the files."""

from __future__ import annotations

from kling_tui.history.store import HistoryStore


def test_children_follow_the_records_and_survive_a_rebuild(tmp_path):
    store = HistoryStore(tmp_path / "tasks")
    parent = store.new_record("generation", {"prompt": "a vase"})
    other = store.new_record("generation", {"prompt": "a table"})
    edit = store.new_record(
        "omni", {"prompt": "<<<image_1>>> cracked", "images": ["a.png"]}, parents=[(parent.local_id, 2)]
    )
    both = store.new_record(
        "omni", {"prompt": "<<<image_1>>> on <<<image_2>>>"}, parents=[(parent.local_id, 1), (other.local_id, 1)]
    )
    assert [c.local_id for c in store.children(parent.local_id)] == [edit.local_id, both.local_id]
    assert [c.local_id for c in store.children(other.local_id)] == [both.local_id]
    assert store.children(edit.local_id) == []

    store.update(edit.local_id, status="succeed")  # a rewrite keeps one link, not two
    assert [c.local_id for c in store.children(parent.local_id)] == [edit.local_id, both.local_id]

    store.close()
    for index_file in store.index_path.parent.glob(store.index_path.name + "*"):
        index_file.unlink()  # the index is derived: gone, it is rebuilt from the task files
    assert not store.index_path.exists()
    again = HistoryStore(tmp_path / "tasks")
    assert [c.local_id for c in again.children(parent.local_id)] == [edit.local_id, both.local_id]
    assert [c.status for c in again.children(parent.local_id)] == ["succeed", "pending"]
    again.close()
