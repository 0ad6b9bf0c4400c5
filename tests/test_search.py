"""Full-text search over the history: the index (FTS5), `kling-tui list --search` and the
table's `/` filter, which matches words anywhere and marks them in the prompt cell."""

from __future__ import annotations

import shutil
import sqlite3

from cli_helpers import kling
from textual.widgets import Input

from kling_tui.base.locations import history_dir
from kling_tui.config import load_settings
from kling_tui.history.index import INDEX_VERSION
from kling_tui.history.store import HistoryStore
from kling_tui.ui.app import make_app
from kling_tui.ui.tasks import MATCH_STYLE
from tests.tui_helpers import cell_text, sandbox_history, wait_for


def _fill(store: HistoryStore) -> dict[str, str]:
    """A few tasks, each findable by a different part of it; returns local ids by name."""
    ids = {}
    fox = store.new_record("generation", {"prompt": "A red fox in deep snow", "model_name": "kling-v2-1"})
    ids["fox"] = fox.local_id
    owl = store.new_record("generation", {"prompt": "an owl", "negative_prompt": "blurry feathers"})
    ids["owl"] = owl.local_id
    cafe = store.new_record("generation", {"prompt": "Café terrace at night"})
    store.update(cafe.local_id, note="for the menu cover")
    ids["cafe"] = cafe.local_id
    boat = store.new_record("generation", {"prompt": "a paper boat"})
    store.update(boat.local_id, status="failed", status_msg="Content risk control triggered")
    ids["boat"] = boat.local_id
    return ids


def _found(store: HistoryStore, words: str) -> set[str]:
    return {row.local_id for row in store.recent(100, words=words)}


def test_search_finds_words_in_prompt_negative_note_failure_and_model(tmp_path):
    with HistoryStore(tmp_path / "tasks") as store:
        ids = _fill(store)
        assert _found(store, "snow fox") == {ids["fox"]}  # any order, not adjacent
        assert _found(store, "FOX sno") == {ids["fox"]}  # case-insensitive; a word's start is enough
        assert _found(store, "feathers") == {ids["owl"]}  # negative prompt
        assert _found(store, "menu") == {ids["cafe"]}  # note
        assert _found(store, "cafe") == {ids["cafe"]}  # accents do not matter
        assert _found(store, "risk control") == {ids["boat"]}  # failure message
        assert _found(store, "v2") == {ids["fox"]}  # model
        assert _found(store, "fox owl") == set()  # every word must match
        assert _found(store, 'fox" OR "owl*') == set()  # query syntax is taken as plain words: fox, or, owl
        assert store.count(words="a") == 4  # "A", "an", "at", "a": every task, each once
        store.update(ids["cafe"], note="for the wine list")
        assert _found(store, "menu") == set() and _found(store, "wine") == {ids["cafe"]}
        shutil.rmtree(store.task_dir(ids["owl"]))
        store.rebuild_index()
        assert _found(store, "feathers") == set()


def test_pages_of_matches_come_newest_first_even_for_tasks_made_in_the_same_microsecond(tmp_path):
    with HistoryStore(tmp_path / "tasks") as store:
        ids = [store.new_record("generation", {"prompt": f"lantern {i}"}).local_id for i in range(5)]
        for local_id in ids[:3]:
            store.update(local_id, created_at=1_750_000_000.5)
        assert store.count(words="lantern") == 5
        newest = [ids[4], ids[3]]
        assert [r.local_id for r in store.recent(2, words="lantern")] == newest
        rest = [r.local_id for r in store.recent(10, offset=2, words="lantern")]
        assert sorted(rest) == sorted(ids[:3])
        assert {r.local_id for r in store.recent(10, words="lantern", status="pending")} == set(ids)


def test_an_index_of_an_older_version_is_rebuilt_with_search(tmp_path):
    with HistoryStore(tmp_path / "tasks") as store:
        ids = _fill(store)
        index_path = store.index_path
    conn = sqlite3.connect(index_path)
    conn.execute("DROP TABLE tasks_fts")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(INDEX_VERSION - 1),))
    conn.commit()
    conn.close()
    with HistoryStore(tmp_path / "tasks") as store:
        assert _found(store, "menu") == {ids["cafe"]}


def test_list_search_prints_matching_tasks_newest_first():
    with HistoryStore(history_dir()) as store:
        ids = _fill(store)
    run = kling("list", "--search", "snow", auth="none")
    assert run.code == 0, run.stderr
    [line] = run.stdout.splitlines()
    assert line.startswith(ids["fox"]) and "A red fox in deep snow" in line
    as_json = kling("list", "--search", "a", "--json", auth="none").json()
    assert [task["local_id"] for task in as_json] == [ids["boat"], ids["cafe"], ids["owl"], ids["fox"]]
    nothing = kling("list", "--search", "!!", auth="none")
    assert nothing.code == 2 and "--search" in nothing.stderr


async def test_table_filter_matches_words_anywhere_and_marks_them(sandbox):
    store = sandbox_history()
    ids = _fill(store)
    store.close()
    app = make_app(load_settings(), sandbox=sandbox, image_protocol="halfcell", poll_interval=0.05)
    async with app.run_test(size=(140, 36)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 4)
        app.table.focus()
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter", Input)
        await pilot.press(*"snow red")
        await wait_for(pilot, lambda: app.table.row_count == 1)
        assert app.table.known(ids["fox"])
        cell = app.table.get_cell(ids["fox"], "prompt")
        marked = {cell.plain[span.start : span.end] for span in cell.spans if span.style == MATCH_STYLE}
        assert marked == {"red", "snow"}
        await pilot.press(*["backspace"] * 8, *"menu")
        await wait_for(pilot, lambda: app.table.known(ids["cafe"]) and app.table.row_count == 1)
        assert "Café terrace" in cell_text(app.table, ids["cafe"], "prompt")
