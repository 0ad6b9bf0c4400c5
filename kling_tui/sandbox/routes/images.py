"""The result images' URLs: drawn on first request, gone once they expire (like Kling's CDN)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kling_tui.sandbox.routes.guard import Service


def routes(service: Service) -> list[Route]:
    state = service.state

    async def image(request: Request):
        name = request.path_params["name"]
        index = name.removesuffix(".png")
        spec = (
            state.image_spec(request.path_params["task_id"], int(index))
            if index.isdigit() and name.endswith(".png")
            else None
        )
        if spec is None:
            return PlainTextResponse("Not Found: the image does not exist or has expired", status_code=404)
        data = await run_in_threadpool(state.images.get, *spec)
        return Response(data, media_type="image/png")

    return [Route("/images/{task_id}/{name}", service.api("image", image, auth=False), methods=["GET"])]
