"""The Starlette app: Kling's HTTP surface over a `SandboxState`, plus /_sandbox controls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any, Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kling_tui.api.errors import CODES, http_status_for
from kling_tui.sandbox.auth import check_authorization
from kling_tui.sandbox.state import ApiError, CallbackEvent, Kind, SandboxState
from kling_tui.api.webhooks import signed_headers

TICK_SECONDS = 0.05
CALLBACK_TIMEOUT = 5.0
PAGE_NUM_MAX, PAGE_SIZE_MAX = 1000, 500

Handler = Callable[[Request], Awaitable[Any]]


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


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


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
            chain.add_done_callback(lambda t, key=event.task_id: self._forget(key, t))

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


def create_app(state: SandboxState) -> Starlette:
    sender = CallbackSender(state)
    config = state.config

    @contextlib.asynccontextmanager
    async def lifespan(app):
        sender.client = httpx.AsyncClient(timeout=CALLBACK_TIMEOUT)

        async def ticker() -> None:
            # Lifecycles also advance on every request; this makes callbacks and freed
            # slots happen on time when nobody is asking.
            while True:
                state.tick()
                sender.flush()
                await asyncio.sleep(TICK_SECONDS)

        task = asyncio.create_task(ticker())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sender.close()

    def api(key: str, handler: Handler, *, auth: bool = True) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request):
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
                code = check_authorization(request.headers.get("authorization"), config, state.clock.now())
                if code is not None:
                    state.count("auth_failed")
                    return error(code)
            try:
                result = await handler(request)
                response = result if isinstance(result, Response) else envelope(result)
            except ApiError as exc:
                response = error(exc.code, exc.message)
            sender.flush()
            if fault is not None and response.status_code == 200:
                if fault.kind == "created_5002":
                    return error(5002)
                if fault.kind == "malformed":
                    body = bytes(response.body)
                    return Response(body[: max(1, len(body) // 2)], status_code=200, media_type=response.media_type)
            return response

        return route

    async def read_json(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            state.count("invalid")
            raise ApiError(1200, "body: is not valid JSON") from None

    def creator(kind: Kind) -> Handler:
        async def handle(request: Request):
            payload = await read_json(request)
            task = state.create(kind, payload, str(request.base_url))
            return task.created_json()

        return handle

    def getter(kind: Kind) -> Handler:
        async def handle(request: Request):
            return state.find(kind, request.path_params["task_id"]).to_json()

        return handle

    def lister(kind: Kind) -> Handler:
        async def handle(request: Request):
            page_num = int_param(request, "pageNum", 1, 1, PAGE_NUM_MAX)
            page_size = int_param(request, "pageSize", 30, 1, PAGE_SIZE_MAX)
            return [t.to_json() for t in state.page(kind, page_num, page_size)]

        return handle

    def int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            if default is None:
                state.count("invalid")
                raise ApiError(1200, f"{name}: is required")
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            state.count("invalid")
            raise ApiError(1201, f"{name}: must be an integer from {low} to {high} (got {raw!r})")
        return value

    async def costs(request: Request):
        start = int_param(request, "start_time", None, 0, 2**53)
        end = int_param(request, "end_time", None, 0, 2**53)
        if end < start:
            state.count("invalid")
            raise ApiError(1201, "end_time: must not be before start_time")
        if not state.allow_costs_request():
            state.count("costs_rate_limited")
            raise ApiError(1302, "Too many requests: /account/costs allows 1 request per second")
        return state.costs()

    async def image(request: Request):
        name = request.path_params["name"]
        index = name.removesuffix(".png")
        spec = state.image_spec(request.path_params["task_id"], int(index)) if index.isdigit() and name.endswith(".png") else None
        if spec is None:
            return PlainTextResponse("Not Found: the image does not exist or has expired", status_code=404)
        data = await run_in_threadpool(state.images.get, *spec)
        return Response(data, media_type="image/png")

    async def control_counters(request: Request):
        return JSONResponse(state.counters())

    async def control_faults(request: Request):
        if request.method == "DELETE":
            state.faults.clear()
        elif request.method == "POST":
            try:
                items = json.loads(await request.body())
                items = items if isinstance(items, list) else [items]
                for item in items:
                    if not isinstance(item, dict):
                        raise ValueError("each fault must be a JSON object")
                    state.faults.add_from(item)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": [f.to_json() for f in state.faults.active()]})

    async def control_clock(request: Request):
        if request.method == "POST":
            try:
                seconds = float(json.loads(await request.body())["advance"])
                state.clock.advance(seconds)
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": f"expected {{\"advance\": seconds >= 0}} ({exc})"}, status_code=400)
            state.tick()
            sender.flush()
        return JSONResponse({"now": state.clock.now_ms()})

    async def not_found(request: Request, exc: HTTPException):
        return error(1203, f"Requested resource does not exist: {request.method} {request.url.path}")

    async def bad_method(request: Request, exc: HTTPException):
        return error(1202, f"Invalid request method: {request.method} {request.url.path}")

    gen, multi = "/v1/images/generations", "/v1/images/multi-image2image"
    routes = [
        Route(gen, api("create", creator("generation")), methods=["POST"]),
        Route(gen, api("list", lister("generation")), methods=["GET"]),
        Route(gen + "/{task_id}", api("get", getter("generation")), methods=["GET"]),
        Route(multi, api("multi_create", creator("multi")), methods=["POST"]),
        Route(multi, api("multi_list", lister("multi")), methods=["GET"]),
        Route(multi + "/{task_id}", api("multi_get", getter("multi")), methods=["GET"]),
        Route("/account/costs", api("costs", costs), methods=["GET"]),
        Route("/images/{task_id}/{name}", api("image", image, auth=False), methods=["GET"]),
        Route("/_sandbox/counters", control_counters, methods=["GET"]),
        Route("/_sandbox/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/clock", control_clock, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: bad_method})
