"""Several kling-tui processes on one history (the same home): CLI commands side by side, a TUI
among them, a command that ends while its task waits for a slot.

Every task is created once and recorded once; a process never deletes another's temp files,
never sends or settles a task another live process owns, and never sends a task whose
command has ended behind its user's back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from textual.widgets import TextArea

from kling_tui.api.types import GenerationRequest
from kling_tui.base.locations import history_dir, log_file
from kling_tui.base.processes import is_alive, is_this_process, role_of, this_process
from kling_tui.config import load_settings
from kling_tui.history.store import RECORD_FILE, HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.ui.app import make_app
from kling_tui.work.workbench import WAITING_FOR_SLOT
from tests.cli_helpers import kling
from tests.test_scheduler import make_bench
from tests.tui_helpers import cell_text, wait_for

LOOPS = 2
PER_LOOP = 50
PARALLEL = 6  # processes at once: enough to overlap writes and start-ups on 2 cores
TUI_TASKS = 5
APPS_STARTING = 6


@pytest.fixture
def sandbox_config(sandbox_config):
    sandbox_config.slots = 64  # no 1303 here: this is about sharing the history
    return sandbox_config


def cli_env(sandbox) -> dict[str, str]:
    return {**os.environ, "KLING_BASE_URL": sandbox.base_url, "KLING_API_KEY": DEFAULT_API_KEY}


async def submit_from_the_form(app, pilot, prompt: str) -> str:
    # Not by the table's row count: rows the CLI commands write may arrive in it meanwhile.
    made: list[str] = []
    app.workbench.subscribe(lambda record: made.append(record.local_id) if record.prompt == prompt else None)
    app.query_one("#prompt", TextArea).text = prompt
    await pilot.press("ctrl+j")
    await wait_for(pilot, lambda: made and app.table.known(made[0]), what=f"the row of {prompt!r}")
    return made[0]


async def test_two_cli_loops_and_a_tui_share_one_history(sandbox, monkeypatch):
    monkeypatch.setenv("KLING_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("KLING_API_KEY", DEFAULT_API_KEY)
    app = make_app(load_settings(), image_protocol="halfcell", poll_interval=0.05)
    jobs = [(loop, i) for i in range(PER_LOOP) for loop in range(LOOPS)]

    def generate(job: tuple[int, int]):
        # Correctness, not speed, is tested here: on a busy 2-core machine one of 100 commands
        # may take long (a stalled request waits for the request deadline, 60 s, then retries).
        return kling("generate", f"loop {job[0]} task {job[1]}", "--wait", "--json", sandbox=sandbox, timeout=240)

    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench is not None)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(PARALLEL) as pool:
            runs = [loop.run_in_executor(pool, generate, job) for job in jobs]
            keys = [await submit_from_the_form(app, pilot, f"from the tui {k}") for k in range(TUI_TASKS)]
            await wait_for(pilot, lambda: all(r.done() for r in runs), timeout=300, what="the CLI loops")
        for key in keys:
            await wait_for(pilot, lambda k=key: "succeed" in cell_text(app.table, k, "status"), timeout=30)
        assert app.is_running

    results = [run.result() for run in runs]
    failed = [r.stderr for r in results if r.code != 0]
    assert failed == [], failed[:3]
    assert not any("Traceback" in r.stderr or "warning" in r.stderr for r in results)
    assert "Traceback" not in (log_file().read_text() if log_file().exists() else "")

    total = LOOPS * PER_LOOP + TUI_TASKS
    store = HistoryStore(history_dir())
    try:
        assert store.warnings == []
        rows = store.recent(limit=1000)
        assert len(rows) == total
        assert Counter(row.status for row in rows) == {"succeed": total}
        records = [store.get(row.local_id) for row in rows]
        assert all(r is not None and r.image_paths == ["image-1.png"] for r in records)
        prompts = Counter(r.prompt for r in records if r is not None)
        assert all(count == 1 for count in prompts.values()) and len(prompts) == total
        leftovers = [p for p in history_dir().rglob(f"{RECORD_FILE}.*.tmp")]
        assert leftovers == []
    finally:
        store.close()
    on_server = Counter(t.external_task_id for t in sandbox.state.tasks.values())
    assert len(on_server) == total and set(on_server.values()) == {1}
    assert {r.external_task_id for r in records if r is not None} == set(on_server)
    assert sandbox.state.counters()["external_id_reuse"] == 0


def test_a_reader_never_puts_an_older_row_over_a_writers_newer_one():
    # Another process reads a task's file just before its owner writes it, and looks up the
    # index just after: it must not "repair" the row with what it read. (It did: the owner's
    # task_id vanished from the index, and the owner, finding no task by that id, never
    # recorded the result; its `generate --wait` waited forever.)
    owner, reader = HistoryStore(history_dir()), HistoryStore(history_dir())
    try:
        record = owner.new_record("generation", {"prompt": "in flight"})
        read_file = reader._load

        def read_then_owner_writes(local_id):
            seen = read_file(local_id)
            if seen is not None and seen.task_id is None:
                owner.update(local_id, status="submitted", task_id="task-1")
            return seen

        reader._load = read_then_owner_writes
        reader.get(record.local_id)
        found = owner.find_by_task_id("task-1")
        assert found is not None and found.local_id == record.local_id
        assert [row.status for row in reader.recent(5)] == ["submitted"]
    finally:
        owner.close()
        reader.close()


async def test_a_task_is_followed_to_the_end_even_when_the_index_lost_its_task_id(sandbox):
    bench = make_bench(sandbox, store=HistoryStore(history_dir()))
    done = asyncio.Event()
    bench.subscribe(lambda record: done.set() if record.image_paths else None)
    follow = asyncio.create_task(bench.follow())
    try:
        record = await bench.submit(GenerationRequest(prompt="followed"))
        assert record.task_id
        # As a stale write by another process once left it: the row without its task_id.
        bench.store._index.conn.execute("UPDATE tasks SET task_id = NULL WHERE local_id = ?", (record.local_id,))
        await asyncio.wait_for(done.wait(), 30)
        saved = bench.store.get(record.local_id)
        assert saved.status == "succeed" and saved.image_paths == ["image-1.png"]
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await bench.aclose()
        await bench.client.aclose()


def test_of_apps_starting_together_one_takes_over_a_task_an_ended_app_left_queued(sandbox):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    with HistoryStore(history_dir()) as store:
        record = store.new_record(
            "generation", {"prompt": "left in the queue"}, owner=f"app:{ended.pid}::", status="queued"
        )
    starts = [
        subprocess.Popen(
            [sys.executable, "tests/adopt_child.py", sandbox.base_url, record.local_id],
            env=cli_env(sandbox),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(APPS_STARTING)
    ]
    try:
        for start in starts:
            assert start.stdout.readline().strip() == "ready"
        for start in starts:
            start.stdin.write("go\n")
            start.stdin.flush()
        said = Counter(start.communicate(timeout=60)[0].strip() for start in starts)
    finally:
        for start in starts:
            start.kill()
    assert said == {"adopted": 1, "left": APPS_STARTING - 1}
    assert sandbox.state.counters()["tasks_created"] == 1
    assert sandbox.state.counters()["external_id_reuse"] == 0


def test_a_new_process_sweeps_only_abandoned_temp_files():
    store = HistoryStore(history_dir())
    record = store.new_record("generation", {"prompt": "being written"})
    folder = store.task_dir(record.local_id)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        minutes_ago = time.time() - 300
        temps = {
            "live writer": folder / f"{RECORD_FILE}.p{alive.pid}-00000001.tmp",
            "ended writer": folder / f"{RECORD_FILE}.p{ended.pid}-00000002.tmp",
            "ended, just now": folder / f"{RECORD_FILE}.p{ended.pid}-00000003.tmp",
            "old version": folder / f"{RECORD_FILE}.00000004.tmp",
            "a day old": folder / f"{RECORD_FILE}.p{alive.pid}-00000005.tmp",
        }
        for name, path in temps.items():
            path.write_bytes(b"half")
            when = {"ended, just now": time.time(), "a day old": time.time() - 86400}.get(name, minutes_ago)
            os.utime(path, (when, when))
        store._index.mark_dirty(record.local_id)  # as if a write of it were under way
        store.close()
        HistoryStore(history_dir()).close()  # a second process starts on the same history
        left = {name for name, path in temps.items() if path.exists()}
    finally:
        alive.kill()
        alive.wait()
    assert left == {"live writer", "ended, just now", "old version"}


def waiting_record(timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with HistoryStore(history_dir()) as store:
            for row in store.recent(5):
                if row.status == "queued" and row.status_msg == WAITING_FOR_SLOT:
                    return store.get(row.local_id)
        time.sleep(0.05)
    raise AssertionError("the command never waited for a slot")


async def test_a_task_whose_command_ended_is_never_sent_behind_its_back(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303)
    child = subprocess.Popen(
        [sys.executable, "-m", "kling_tui", "generate", "paid for once", "--json"],
        env=cli_env(sandbox),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        waiting = await asyncio.to_thread(waiting_record)
        # While its command runs, the task is that command's: another process leaves it alone.
        other = make_bench(sandbox, store=HistoryStore(history_dir()))
        await other.reconcile()
        assert other.queue == [] and other.store.get(waiting.local_id).status == "queued"
        await other.aclose()
        await other.client.aclose()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    sandbox.state.faults.clear()
    later = make_bench(sandbox, store=HistoryStore(history_dir()))
    try:
        await later.reconcile()
        settled = later.store.get(waiting.local_id)
        assert settled.status == "not_created" and "ended first" in settled.status_msg
        assert later.queue == []
        await asyncio.sleep(0.5)
    finally:
        await later.aclose()
        await later.client.aclose()
    assert sandbox.state.counters()["tasks_created"] == 0


def test_ctrl_c_while_waiting_for_a_slot_leaves_it_not_created(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303)
    child = subprocess.Popen(
        [sys.executable, "-m", "kling_tui", "generate", "never mind", "--json"],
        env=cli_env(sandbox),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    waiting = waiting_record()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    with HistoryStore(history_dir()) as store:
        record = store.get(waiting.local_id)
    assert record.status == "not_created" and "interrupted before it was sent" in record.status_msg
    assert sandbox.state.counters()["tasks_created"] == 0


async def test_a_start_up_lookup_never_overrides_a_create_on_its_way(sandbox):
    # The start-up pass (reconcile) runs while the first create is still unanswered: looking
    # it up then finds nothing, which must not make it "not created" (it is, a moment later).
    sandbox.state.faults.add(endpoint="create", kind="latency", seconds=0.5, times=1)
    bench = make_bench(sandbox)
    seen: list[str] = []
    bench.subscribe(lambda r: seen.append(r.status))
    following = asyncio.create_task(bench.follow())
    try:
        queued = bench.enqueue(GenerationRequest(prompt="on its way"))
        await asyncio.sleep(0.05)
        await bench.reconcile()
        await bench.confirm_unanswered()
        record = await bench.wait_sent(queued.local_id)
        assert record.task_id is not None
        deadline = time.monotonic() + 15
        while bench.store.get(queued.local_id).status != "succeed":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        following.cancel()
        await bench.aclose()
        await bench.client.aclose()
    assert "not_created" not in seen
    assert sandbox.state.counters()["tasks_created"] == 1


def test_an_owner_token_tells_a_running_process_from_an_ended_or_reused_one():
    me = this_process("cli")
    assert role_of(me) == "cli" and is_this_process(me) and is_alive(me)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    _, _, start, boot = me.split(":")
    assert not is_alive(f"cli:{ended.pid}:{start}:{boot}")
    if start:  # where the system tells start times, a reused pid is told apart
        assert not is_alive(f"cli:{os.getpid()}:{int(start) + 1}:{boot}")
    if boot:  # a token from before a reboot
        assert not is_alive(f"cli:{os.getpid()}:{start}:{'0' * len(boot)}")
    assert not is_alive(None) and not is_alive("garbage")


def test_processes_starting_together_on_a_fresh_home_all_open_the_history(tmp_path):
    # Each start finds an index to create; they take turns, so none deletes another's files.
    code = (
        "import sys\nfrom kling_tui.history.store import HistoryStore\n"
        "store = HistoryStore(sys.argv[1])\nstore.recent(5)\nstore.close()\n"
    )
    for trial in range(3):
        folder = tmp_path / f"home-{trial}" / "history"
        starts = [
            subprocess.Popen([sys.executable, "-c", code, str(folder)], stderr=subprocess.PIPE, text=True)
            for _ in range(16)
        ]
        errors = [p.communicate()[1] for p in starts]
        assert [p.returncode for p in starts] == [0] * 16, [e for e in errors if e][:2]


def test_an_index_another_process_is_creating_is_used_not_deleted(tmp_path):
    import sqlite3

    from kling_tui.history.index import TaskIndex

    path = tmp_path / "index.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)  # another process, between open and its tables
    other.execute("PRAGMA journal_mode=WAL")
    before = path.stat().st_ino
    index = TaskIndex(path)
    try:
        assert index.open() == "new"
        assert path.stat().st_ino == before  # the file the other process has open is not replaced
        other.execute("CREATE TABLE IF NOT EXISTS written_by_the_other (x)")
        tables = {r[0] for r in index.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "written_by_the_other" in tables and "tasks" in tables  # one file for both
    finally:
        index.close()
        other.close()
