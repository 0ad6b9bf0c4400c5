"""`/_sandbox/*`: what tests and demos steer: counters, faults on demand, the clock."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kling_tui.sandbox.routes.guard import Service


def routes(service: Service) -> list[Route]:
    state = service.state

    async def counters(request: Request):
        return JSONResponse(state.counters())

    async def faults(request: Request):
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

    async def clock(request: Request):
        if request.method == "POST":
            try:
                seconds = float(json.loads(await request.body())["advance"])
                state.clock.advance(seconds)
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": f'expected {{"advance": seconds >= 0}} ({exc})'}, status_code=400)
            state.tick()
            service.sender.flush()
        return JSONResponse({"now": state.clock.now_ms()})

    return [
        Route("/_sandbox/counters", counters, methods=["GET"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/clock", clock, methods=["GET", "POST"]),
    ]
