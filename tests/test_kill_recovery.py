"""Write-ahead history survives SIGKILL at any moment: nothing the server created is lost,
nothing is created twice, and no history file is ever unreadable.

A child process (tests/kill_child.py) submits tasks in a loop through the Workbench against
a sandbox served by a third process, so the sandbox outlives every kill. The test kills the
child at random moments, many times over, then settles history as the next start would and
compares it with the sandbox's own task list and counters.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from kling_tui.api.auth import JwtAuth
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.base import locations
from kling_tui.history.index import ACTIVE_STATUSES
from kling_tui.history.store import RECORD_FILE, HistoryStore, record_from_toml
from kling_tui.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench

CHILD = Path(__file__).with_name("kill_child.py")
ROUNDS = 25
SEED = int(os.environ.get("KILL_SEED", "20260607"))
START_TIMEOUT = 20.0
SETTLE_TIMEOUT = 20.0


@pytest.fixture
def sandbox_process(tmp_path):
    """`kling-tui sandbox` in its own process, so killing the client never touches it."""
    log = (tmp_path / "sandbox.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kling_tui",
            "sandbox",
            "--port",
            "0",
            "--submitted-seconds",
            "0.05",
            "--processing-seconds",
            "0.1",
            "--slots",
            "1000",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = _wait_for_url(proc, tmp_path / "sandbox.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for_url(proc: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(r"serving at (http://\S+)", log_path.read_text())
        if match:
            return match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the sandbox did not start:\n{log_path.read_text()}")


def _start_child(base_url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CHILD), base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _read_ready(child: subprocess.Popen) -> int | None:
    """Records the child settled on start, once it says "ready"; None if it died first."""
    deadline = time.monotonic() + START_TIMEOUT
    assert child.stdout is not None
    while time.monotonic() < deadline:
        readable, _, _ = select.select([child.stdout], [], [], 0.1)
        if readable:
            line = child.stdout.readline().decode()
            if not line:
                return None
            if line.startswith("ready"):
                return int(line.split()[1])
    raise AssertionError("the child never got ready")


def _kill(child: subprocess.Popen) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    if child.stdout is not None:
        child.stdout.close()


def _read_every_record() -> tuple[int, int, int]:
    """Parse every task.toml straight from disk; returns (records, leftover temp files, empty folders).

    A kill between creating a task's folder and its first write leaves a folder without a
    record; nothing was sent for it, so it is harmless (and ignored by the store).
    """
    records = temps = empty = 0
    for folder in locations.history_dir().iterdir():
        if not folder.is_dir():
            continue
        temps += len(list(folder.glob(f"{RECORD_FILE}.*.tmp")))
        path = folder / RECORD_FILE
        if not path.exists():
            empty += 1
            continue
        record_from_toml(folder.name, path.read_text(encoding="utf-8"))  # raises when unreadable
        records += 1
    return records, temps, empty


async def _settle_and_compare(base_url: str) -> dict[str, int]:
    store = HistoryStore()
    assert store.warnings == []
    active_before = store.count(status=ACTIVE_STATUSES)
    auth = JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    async with KlingClient(base_url, auth, timeout=5.0, backoff=0.01, max_backoff=0.05) as client:
        tracker = Tracker(client, min_interval=0.05, max_interval=0.2)
        bench = Workbench(client, store, default_capabilities(), tracker=tracker, auto_download=False)
        await bench.reconcile()
        following = asyncio.create_task(bench.follow())
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while store.count(status=ACTIVE_STATUSES) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        following.cancel()
        await bench.aclose()
        left_active = [r.local_id for r in store.active()]
        assert left_active == [], f"records never settled: {left_active}"
        server_tasks = await client.list_all()
    async with httpx.AsyncClient() as http:
        counters = (await http.get(f"{base_url}/_sandbox/counters")).json()

    on_server = Counter(t.external_task_id for t in server_tasks)
    assert None not in on_server, "a task was created without an external_task_id"
    assert [e for e, times in on_server.items() if times > 1] == []
    assert counters["external_id_reuse"] == 0
    assert counters["tasks_created"] == len(server_tasks)
    lost = []
    for task in server_tasks:
        record = store.find_by_external_id(task.external_task_id)
        if record is None or record.task_id != task.task_id:
            lost.append(task.task_id)
    assert lost == [], f"created on the server but missing from history: {lost}"
    rows = store.recent(limit=100_000)
    statuses = Counter(row.status for row in rows)
    not_created = [store.get(row.local_id) for row in rows if row.status == "not_created"]
    assert all(r.status_msg for r in not_created)
    assert not {r.external_task_id for r in not_created} & set(on_server), "a created task is marked not created"
    store.close()
    return {
        "history_records": len(rows),
        "server_tasks": len(server_tasks),
        "active_before_final_start": active_before,
        "not_created": statuses["not_created"],
        "succeed": statuses["succeed"],
        "lost": len(lost),
        "duplicates": sum(times - 1 for times in on_server.values()),
        "external_id_reuse": counters["external_id_reuse"],
    }


def test_killing_the_submitter_at_random_moments_loses_nothing(sandbox_process):
    rng = random.Random(SEED)
    killed_before_ready = settled_on_restart = 0
    for _ in range(ROUNDS):
        child = _start_child(sandbox_process)
        if rng.random() < 0.25:
            # Anywhere from start-up through reconcile into the first creates.
            time.sleep(rng.uniform(0.1, 0.8))
            if child.poll() is None:
                killed_before_ready += 1
        else:
            settled = _read_ready(child)
            assert settled is not None, "the child died on its own"
            settled_on_restart += settled
            time.sleep(rng.uniform(0.0, 0.4))
        assert child.poll() is None, "the child exited on its own"
        _kill(child)

    records, temps, empty = _read_every_record()
    figures = asyncio.run(_settle_and_compare(sandbox_process))
    figures.update(
        rounds=ROUNDS,
        seed=SEED,
        records_parsed=records,
        temp_files_left=temps,
        folders_without_record=empty,
        killed_during_start=killed_before_ready,
        settled_by_restarts=settled_on_restart,
    )
    print("\nkill recovery:", ", ".join(f"{k}={v}" for k, v in figures.items()))
    assert records == figures["history_records"]
    assert figures["server_tasks"] > 0
