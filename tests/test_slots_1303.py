"""1303 ("all of the account's slots are in use") means "not created, try again": the task waits
as queued, and whoever awaits it keeps waiting, in the CLI and in the TUI.

The sandbox answers the first k creates with 1303 (another client holding the slots), then
accepts; the task must be created exactly once and never be shown or recorded as not created.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

from kling_tui.api.types import GenerationRequest
from kling_tui.base.locations import history_dir
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.work.workbench import WAITING_FOR_SLOT
from tests.cli_helpers import kling
from tests.test_scheduler import make_bench
from tests.test_tui_keys import app_for, submit_prompt
from tests.tui_helpers import cell_text, sandbox_history, wait_for

BUSY_TIMES = 3


def only_record() -> object:
    with HistoryStore(history_dir()) as store:
        rows = store.recent(10)
        assert len(rows) == 1, [r.status for r in rows]
        return store.get(rows[0].local_id)


def test_cli_generate_waits_through_1303_and_creates_the_task_once(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303, times=BUSY_TIMES)
    run = kling("generate", "a lighthouse", "--wait", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    assert run.json()["status"] == "succeed"
    counters = sandbox.state.counters()
    assert counters["tasks_created"] == 1 and counters["external_id_reuse"] == 0
    assert counters["create"] == BUSY_TIMES + 1
    record = only_record()
    assert record.status == "succeed" and record.image_paths


def test_cli_omni_and_expand_wait_through_1303_like_generate(sandbox):
    sandbox.state.faults.add(endpoint="omni_create", kind="error", code=1303, times=BUSY_TIMES)
    run = kling("omni", "a lighthouse", "--wait", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    assert run.json()["status"] == "succeed"
    image = run.json()["images"][0]
    sandbox.state.faults.add(endpoint="expand_create", kind="error", code=1303, times=2)
    run = kling("expand", image, "--left", "0.5", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    counters = sandbox.state.counters()
    assert (counters["omni_create"], counters["expand_create"], counters["tasks_created"]) == (BUSY_TIMES + 1, 3, 2)


def test_cli_generate_without_wait_also_waits_for_the_slot(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303, times=2)
    run = kling("generate", "a harbour", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    assert run.json()["task_id"]
    assert sandbox.state.counters()["tasks_created"] == 1


def test_cli_gives_up_after_max_wait_and_history_says_not_created(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303)
    started = time.monotonic()
    run = kling("generate", "a crowded day", "--max-wait", "3s", "--json", sandbox=sandbox)
    assert run.code == 3
    assert time.monotonic() - started < 30
    assert "gave up waiting for a free slot after 3s" in run.stderr
    assert run.json()["status"] == "not_created"
    assert sandbox.state.counters()["tasks_created"] == 0
    # What the command said is what history holds: nothing left queued to be sent later.
    record = only_record()
    assert record.status == "not_created" and "gave up waiting for a free slot" in record.status_msg


def test_cli_shows_slot_progress_on_a_terminal(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303, times=2)
    leader, follower = pty.openpty()
    env = {**os.environ, "KLING_BASE_URL": sandbox.base_url, "KLING_API_KEY": DEFAULT_API_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kling_tui", "generate", "a queue", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    out, _ = proc.communicate(timeout=60)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    stderr = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, stderr
    assert "waiting for a free slot" in stderr and "of 30m (--max-wait)" in stderr
    assert b"waiting" not in out  # progress never goes to stdout


def test_max_wait_must_be_a_duration():
    run = kling("generate", "p", "--max-wait", "soon", auth="none")
    assert run.code == 2 and "--max-wait" in run.stderr and "30m" in run.stderr


async def test_workbench_keeps_a_1303_task_queued_and_its_waiter_waiting(sandbox):
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303, times=2)
    bench = make_bench(sandbox)
    seen = []
    bench.subscribe(lambda r: seen.append((r.status, r.status_msg)))
    try:
        record = await bench.submit(GenerationRequest(prompt="patient"))
    finally:
        await bench.aclose()
        await bench.client.aclose()
    assert record.task_id and record.status in ("submitted", "processing", "succeed")
    assert ("queued", WAITING_FOR_SLOT) in seen
    assert all(status != "not_created" for status, _ in seen)
    assert sandbox.state.counters()["tasks_created"] == 1


async def test_tui_row_goes_queued_submitted_succeed_and_never_not_created(sandbox):
    sandbox.state.faults.clear()
    sandbox.state.faults.add(endpoint="create", kind="error", code=1303, times=BUSY_TIMES)
    app = app_for(sandbox)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.workbench is not None)
        statuses: list[str] = []
        app.workbench.subscribe(lambda r: statuses.append(r.status))
        shown: list[str] = []
        key = await submit_prompt(app, pilot, "a busy afternoon")

        def settled() -> bool:
            shown.append(cell_text(app.table, key, "status") + " " + cell_text(app.table, key, "prompt"))
            return "succeed" in shown[-1]

        await wait_for(pilot, settled, timeout=30, what="the task to succeed")
    assert "not_created" not in statuses and not any("not created" in text for text in shown)
    assert any("queued" in text and "waiting for a free slot" in text for text in shown)
    order = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    assert order[0] == "queued" and order[-1] == "succeed" and "submitted" in order
    assert order.index("queued") < order.index("submitted") < order.index("succeed")
    assert sandbox.state.counters()["tasks_created"] == 1
    assert sandbox_history().get(key).status == "succeed"
