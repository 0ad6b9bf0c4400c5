"""Fault soak: hundreds of tasks while a fifth of all requests fail in every way the sandbox can.

Every task must end in a final state in history (succeed, failed, or not_created with a
reason), every task the sandbox created must be in history with its task_id, and none may
be created twice. The figures are printed (run pytest with -s to see them).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from kling_tui.api.auth import JwtAuth
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.types import GenerationRequest
from kling_tui.history.index import ACTIVE_STATUSES
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Sandbox, SandboxConfig
from kling_tui.work.budget import SlotBudget
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench

TASKS = 300
FAULT_SHARE = 0.20  # of the requests to each endpoint below
CLIENT_TIMEOUT = 0.25
SLOW = 0.5  # latency faults answer after this: beyond the client's timeout
ENDPOINTS = ("create", "get", "list")
FAULTS = [
    {"kind": "error", "code": 5000},
    {"kind": "error", "code": 5001},
    {"kind": "error", "code": 5002},
    {"kind": "error", "code": 1302},
    {"kind": "error", "code": 1303},
    {"kind": "latency", "seconds": SLOW},
    {"kind": "drop"},
    {"kind": "created_5002"},
    {"kind": "malformed"},
]
SETTLE_TIMEOUT = 50.0
RESTARTS = 5


def add_faults(sandbox: Sandbox) -> None:
    for endpoint in ENDPOINTS:
        kinds = [f for f in FAULTS if f["kind"] != "created_5002" or endpoint == "create"]
        # Each fault is tried in turn: this rate makes one of them fire on FAULT_SHARE of requests.
        rate = 1 - (1 - FAULT_SHARE) ** (1 / len(kinds))
        for fault in kinds:
            sandbox.state.faults.add(endpoint=endpoint, rate=rate, **fault)


def unconfirmed_only(store: HistoryStore, bench: Workbench) -> bool:
    """Only creates that got no clear answer are left: in a session nothing looks them up again."""
    if bench.queue:
        return False
    return all(r.status == "pending" and r.status_msg.startswith("not confirmed") for r in store.active())


async def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


@pytest.fixture
def sandbox():
    config = SandboxConfig(submitted_seconds=0.02, processing_seconds=0.05, seed=77, slots=9, total_units=1e9)
    with Sandbox(config) as sb:
        add_faults(sb)
        yield sb


async def test_every_task_reaches_a_final_state_under_faults(sandbox):
    auth = JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    store = HistoryStore()
    client = KlingClient(
        sandbox.base_url, auth, timeout=CLIENT_TIMEOUT, backoff=0.01, max_backoff=0.05, busy_backoff=0.05
    )
    started = time.monotonic()
    async with client:
        tracker = Tracker(client, min_interval=0.02, max_interval=0.1)
        budget = SlotBudget(sandbox.config.slots, recover_seconds=0.1)
        bench = Workbench(client, store, default_capabilities(), tracker=tracker, auto_download=False, budget=budget)
        poll_errors: list[Exception] = []
        following = asyncio.create_task(bench.follow(on_error=poll_errors.append))
        for i in range(TASKS):
            prompt = f"soak {i} #fail" if i % 10 == 3 else f"soak {i}"
            bench.enqueue(GenerationRequest(prompt=prompt))
        await wait_until(
            lambda: not store.count(status=ACTIVE_STATUSES) or unconfirmed_only(store, bench), SETTLE_TIMEOUT
        )
        # What the next start does: look up creates never confirmed.
        restarts = 0
        while store.count(status=ACTIVE_STATUSES) and restarts < RESTARTS:
            restarts += 1
            await bench.reconcile()
            await wait_until(lambda: not store.count(status=ACTIVE_STATUSES) or unconfirmed_only(store, bench), 10)
        following.cancel()
        await bench.aclose()
        counters_under_faults = sandbox.state.counters()
        sandbox.state.faults.clear()
        server_tasks = await client.list_all()
    elapsed = time.monotonic() - started
    counters = sandbox.state.counters()

    rows = store.recent(limit=10_000)
    statuses = Counter(row.status for row in rows)
    on_server = Counter(t.external_task_id for t in server_tasks)
    lost = [
        t.task_id
        for t in server_tasks
        if (r := store.find_by_external_id(t.external_task_id or "")) is None or r.task_id != t.task_id
    ]
    duplicates = sum(times - 1 for times in on_server.values()) + counters["tasks_created"] - len(server_tasks)
    reasons = Counter((store.get(row.local_id).status_msg or "")[:60] for row in rows if row.status == "not_created")
    requests = sum(counters_under_faults[e] for e in ENDPOINTS)
    print(
        f"\nfault soak: tasks={len(rows)} final={dict(statuses)} server_tasks={len(server_tasks)} "
        f"lost={len(lost)} duplicates={duplicates} restarts_needed={restarts} seconds={elapsed:.1f}\n"
        f"  requests(create/get/list)={requests} faults_fired={counters_under_faults['faults']} "
        f"({counters_under_faults['faults'] / max(1, requests):.0%}) "
        f"external_id_reuse_refused={counters['external_id_reuse']} over_concurrency={counters['over_concurrency']} "
        f"invalid={counters['invalid']}\n"
        f"  client: {client.stats}\n"
        f"  not_created reasons: {dict(reasons)}"
    )
    assert len(rows) == TASKS
    assert store.count(status=ACTIVE_STATUSES) == 0, [r.status_msg for r in store.active()]
    assert set(statuses) <= {"succeed", "failed", "not_created"}
    assert all(store.get(row.local_id).status_msg for row in rows if row.status in ("failed", "not_created"))
    assert lost == []
    assert duplicates == 0
    assert None not in on_server
    assert counters["invalid"] == 0
    assert statuses["succeed"] + statuses["failed"] == len(server_tasks)
    assert counters_under_faults["faults"] >= 0.1 * requests
