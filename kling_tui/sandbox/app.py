"""The Starlette app: Kling's HTTP surface over a `SandboxState`, plus /_sandbox controls."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from kling_tui.sandbox.callbacks import CALLBACK_TIMEOUT, CallbackSender
from kling_tui.sandbox.routes import account, control, images, tasks
from kling_tui.sandbox.routes.guard import Service, error
from kling_tui.sandbox.state import SandboxState

TICK_SECONDS = 0.05


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def create_app(state: SandboxState) -> Starlette:
    service = Service(state, CallbackSender(state))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.sender.client = httpx.AsyncClient(timeout=CALLBACK_TIMEOUT)

        async def ticker() -> None:
            # Lifecycles also advance on every request; this makes callbacks and freed
            # slots happen on time when nobody is asking.
            while True:
                state.tick()
                service.sender.flush()
                await asyncio.sleep(TICK_SECONDS)

        task = asyncio.create_task(ticker())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await service.sender.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(1203, f"Requested resource does not exist: {request.method} {request.url.path}")

    async def bad_method(request: Request, exc: Exception) -> Response:
        return error(1202, f"Invalid request method: {request.method} {request.url.path}")

    routes = [route for family in (tasks, account, images, control) for route in family.routes(service)]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: bad_method})
