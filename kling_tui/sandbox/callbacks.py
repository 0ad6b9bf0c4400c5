"""Delivers the callbacks a task's status changes queue, signed when a webhook secret is set."""

from __future__ import annotations

import asyncio
import functools
import uuid

import httpx

from kling_tui.api.webhooks import signed_headers
from kling_tui.sandbox.state import CallbackEvent, SandboxState

CALLBACK_TIMEOUT = 5.0


class CallbackSender:
    """POSTs queued callbacks; one chain per task keeps each task's callbacks in order."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.client: httpx.AsyncClient | None = None
        self._chains: dict[str, asyncio.Task] = {}

    def flush(self) -> None:
        for event in self.state.take_callbacks():
            previous = self._chains.get(event.task_id)
            chain = asyncio.create_task(self._deliver_after(previous, event))
            self._chains[event.task_id] = chain
            chain.add_done_callback(functools.partial(self._forget, event.task_id))

    def _forget(self, task_id: str, chain: asyncio.Task) -> None:
        if self._chains.get(task_id) is chain:
            del self._chains[task_id]

    async def _deliver_after(self, previous: asyncio.Task | None, event: CallbackEvent) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await self._deliver(event)

    async def _deliver(self, event: CallbackEvent) -> None:
        headers = {"content-type": "application/json", "user-agent": "kling-tui-sandbox"}
        secret = self.state.config.webhook_secret
        if secret:
            stamp = int(self.state.clock.now())
            headers.update(signed_headers(secret, f"msg_{uuid.uuid4().hex}", stamp, event.body))
        try:
            assert self.client is not None
            answer = await self.client.post(event.url, content=event.body, headers=headers)
            ok = answer.status_code < 300
        except Exception:  # a receiver that is down or broken must never hurt the service
            ok = False
        self.state.count("callbacks_sent" if ok else "callbacks_failed")

    async def close(self) -> None:
        chains = list(self._chains.values())
        for chain in chains:
            chain.cancel()
        await asyncio.gather(*chains, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()
