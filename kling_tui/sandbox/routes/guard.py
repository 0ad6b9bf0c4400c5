"""What every Kling endpoint shares: the envelope, error answers, faults on demand and auth."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kling_tui.api.errors import CODES, http_status_for
from kling_tui.sandbox.auth import check_authorization
from kling_tui.sandbox.callbacks import CallbackSender
from kling_tui.sandbox.state import ApiError, SandboxState

Handler = Callable[[Request], Awaitable[Any]]


@dataclass
class Service:
    """The state the routes serve and the sender that delivers its callbacks."""

    state: SandboxState
    sender: CallbackSender

    def api(self, key: str, handler: Handler, *, auth: bool = True) -> Callable[[Request], Awaitable[Response]]:
        """`handler` behind the counters (`key`), the faults set for `key`, and auth."""
        state = self.state

        async def route(request: Request) -> Any:
            state.count(key)
            fault = state.faults.pick(key)
            if fault is not None:
                state.count("faults")
                if fault.kind == "error":
                    return error(fault.code)
                if fault.kind == "drop":
                    return DroppedResponse()
                if fault.kind == "latency":
                    # Take the body first, as a slow real service would: the request is still
                    # handled after a client that gave up has gone (a create then exists).
                    await request.body()
                    await asyncio.sleep(fault.seconds or 0)
            if auth:
                code = check_authorization(request.headers.get("authorization"), state.config, state.clock.now())
                if code is not None:
                    state.count("auth_failed")
                    return error(code)
            try:
                result = await handler(request)
                response = result if isinstance(result, Response) else envelope(result)
            except ApiError as exc:
                response = error(exc.code, exc.message)
            self.sender.flush()
            if fault is not None and response.status_code == 200:
                if fault.kind == "created_5002":
                    return error(5002)
                if fault.kind == "malformed":
                    body = bytes(response.body)
                    return Response(body[: max(1, len(body) // 2)], status_code=200, media_type=response.media_type)
            return response

        return route

    async def read_json(self, request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            self.state.count("invalid")
            raise ApiError(1200, "body: is not valid JSON") from None

    def int_param(self, request: Request, name: str, default: int | None, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            if default is None:
                self.state.count("invalid")
                raise ApiError(1200, f"{name}: is required")
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            self.state.count("invalid")
            raise ApiError(1201, f"{name}: must be an integer from {low} to {high} (got {raw!r})")
        return value


def envelope(data: Any = None, *, code: int = 0, message: str = "SUCCEED", status: int = 200) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    if code == 0:
        body["data"] = data
    return JSONResponse(body, status_code=status)


def error(code: int, message: str | None = None) -> JSONResponse:
    info = CODES.get(code)
    return envelope(code=code, message=message or (info.meaning if info else "Error"), status=http_status_for(code))


class DroppedResponse:
    """Headers and a few bytes of a longer body, then the connection closes mid-answer."""

    async def __call__(self, scope, receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"code":0,', "more_body": True})
        # Returning now makes uvicorn close the transport: the client sees a protocol error.
