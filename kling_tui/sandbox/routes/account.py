"""`GET /account/costs`: the resource packs, at most one request a second."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from kling_tui.sandbox.routes.guard import Service
from kling_tui.sandbox.state import ApiError


def routes(service: Service) -> list[Route]:
    state = service.state

    async def costs(request: Request):
        start = service.int_param(request, "start_time", None, 0, 2**53)
        end = service.int_param(request, "end_time", None, 0, 2**53)
        if end < start:
            state.count("invalid")
            raise ApiError(1201, "end_time: must not be before start_time")
        if not state.allow_costs_request():
            state.count("costs_rate_limited")
            raise ApiError(1302, "Too many requests: /account/costs allows 1 request per second")
        return state.costs()

    return [Route("/account/costs", service.api("costs", costs), methods=["GET"])]
