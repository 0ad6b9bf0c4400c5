"""Submits tasks in a loop until it is killed; run by test_kill_recovery.py.

    python tests/kill_child.py BASE_URL

Uses the history under KLING_TUI_HOME (shared with the test). On start it reconciles what an
earlier, killed run left behind, prints "ready <settled>" and then keeps three creates in
flight while following the tasks, exactly as the app does.
"""

from __future__ import annotations

import asyncio
import sys

from kling_tui.api.auth import JwtAuth
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.types import GenerationRequest
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench

IN_FLIGHT = 3
MAX_BATCHES = 10_000  # bounded: the test kills us long before


async def main(base_url: str) -> None:
    auth = JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    async with KlingClient(base_url, auth, timeout=5.0, backoff=0.01, max_backoff=0.05) as client:
        store = HistoryStore()
        tracker = Tracker(client, min_interval=0.05, max_interval=0.2)
        bench = Workbench(client, store, default_capabilities(), tracker=tracker, auto_download=False)
        settled = await bench.reconcile()
        print(f"ready {len(settled)}", flush=True)
        following = asyncio.create_task(bench.follow())
        try:
            for batch in range(MAX_BATCHES):
                requests = [GenerationRequest(prompt=f"kill test {batch}.{i}") for i in range(IN_FLIGHT)]
                await asyncio.gather(*(bench.submit(r) for r in requests))
        finally:
            following.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
