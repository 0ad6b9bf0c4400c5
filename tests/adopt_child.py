"""Starts as the app does (reconcile) the moment a line arrives on stdin; run by
test_two_processes.py, several at once, to race for a task an ended app left queued.

    python tests/adopt_child.py BASE_URL LOCAL_ID

Prints "adopted" when this process took the task over (once its create has an answer),
"left" when another one did.
"""

from __future__ import annotations

import asyncio
import sys

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.history.store import HistoryStore
from kling_tui.sandbox.config import DEFAULT_API_KEY
from kling_tui.work.tracker import Tracker
from kling_tui.work.workbench import Workbench


async def main(base_url: str, local_id: str) -> None:
    async with KlingClient(base_url, ApiKeyAuth(DEFAULT_API_KEY)) as client:
        bench = Workbench(client, HistoryStore(), default_capabilities(), tracker=Tracker(client), auto_download=False)
        print("ready", flush=True)
        sys.stdin.readline()  # all start together
        await bench.reconcile()
        record = bench.store.get(local_id)
        if record is not None and record.owner == bench.owner:
            await bench.wait_sent(local_id)
            print("adopted", flush=True)
        else:
            print("left", flush=True)
        await bench.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
