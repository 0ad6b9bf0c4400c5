"""Create, get and list for every task kind, from one table: a new endpoint is a new row."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from kling_tui.sandbox.routes.guard import Handler, Service
from kling_tui.sandbox.state import Kind

PAGE_NUM_MAX, PAGE_SIZE_MAX = 1000, 500

# kind -> (path, prefix of its counter and fault keys: "create", "multi_create", ...)
TASK_ENDPOINTS: dict[Kind, tuple[str, str]] = {
    "generation": ("/v1/images/generations", ""),
    "multi": ("/v1/images/multi-image2image", "multi_"),
    "omni": ("/v1/images/omni-image", "omni_"),
    "expand": ("/v1/images/editing/expand", "expand_"),
}


def routes(service: Service) -> list[Route]:
    found: list[Route] = []
    for kind, (path, prefix) in TASK_ENDPOINTS.items():
        found += [
            Route(path, service.api(prefix + "create", _creator(service, kind)), methods=["POST"]),
            Route(path, service.api(prefix + "list", _lister(service, kind)), methods=["GET"]),
            Route(path + "/{task_id}", service.api(prefix + "get", _getter(service, kind)), methods=["GET"]),
        ]
    return found


def _creator(service: Service, kind: Kind) -> Handler:
    async def handle(request: Request):
        payload = await service.read_json(request)
        task = service.state.create(kind, payload, str(request.base_url))
        return task.created_json()

    return handle


def _getter(service: Service, kind: Kind) -> Handler:
    async def handle(request: Request):
        return service.state.find(kind, request.path_params["task_id"]).to_json()

    return handle


def _lister(service: Service, kind: Kind) -> Handler:
    async def handle(request: Request):
        page_num = service.int_param(request, "pageNum", 1, 1, PAGE_NUM_MAX)
        page_size = service.int_param(request, "pageSize", 30, 1, PAGE_SIZE_MAX)
        return [t.to_json() for t in service.state.page(kind, page_num, page_size)]

    return handle
