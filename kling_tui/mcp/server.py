"""The MCP server: tools over one Workbench and the shared history.

Tasks an assistant creates go through the same write-ahead history, local queue and slot
budget as the TUI's, so they show up in its table. Answers carry what history holds (which
never includes credentials) and server messages as plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from mcp_types import TextContent, ToolAnnotations

from kling_tui import __version__
from kling_tui.api.auth import ApiKeyAuth, Auth, Credentials, MissingCredentials, auth_from
from kling_tui.api.client import PATHS, KlingClient, is_loopback
from kling_tui.api.errors import InvalidRequest, KlingError
from kling_tui.api.prices import price
from kling_tui.api.types import NOT_PARAMS, Parent, Request, request_from_params
from kling_tui.base.textsafe import plain
from kling_tui.config import Settings
from kling_tui.history.index import search_terms
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.work.budget import SlotBudget
from kling_tui.work.references import ImageRefError, resolve_image
from kling_tui.work.spending import over_budget, spent_by, spent_today
from kling_tui.work.tracker import StatusChange, Tracker
from kling_tui.work.workbench import Workbench

WAIT_DEFAULT_SECONDS = 120.0
WAIT_MAX_SECONDS = 600.0
INLINE_IMAGE_BYTES = 2 * 1024 * 1024  # images returned as content only up to this size each
SEARCH_LIMIT_MAX = 200

INSTRUCTIONS = (
    "Generate images with the Kling AI image API through kling-tui. Every task is recorded in "
    "the user's kling-tui history before it is sent and appears in the kling-tui app. Use "
    "list_models to see the models and their units per image, generate to create a task (any "
    "endpoint via `kind`; an image field may be '<task id>:<image number>' to use an image "
    "of an earlier task), wait_for_task to wait for it, get_images for the saved files, and "
    "search_history to find earlier tasks by words."
)


class Service:
    """The workbench, its following loop, and the answers the tools give."""

    def __init__(self, workbench: Workbench, settings: Settings, credentials_problem: str | None) -> None:
        self.workbench = workbench
        self.store = workbench.store
        self.settings = settings
        self.credentials_problem = credentials_problem
        self._waiters: dict[str, list[asyncio.Future[TaskRecord]]] = {}
        self.made: list[str] = []  # local ids of the tasks this server created: its session budget
        workbench.subscribe(self._on_record)

    def _on_record(self, record: TaskRecord) -> None:
        if record.is_final:
            for waiter in self._waiters.pop(record.local_id, []):
                if not waiter.done():
                    waiter.set_result(record)

    def require_credentials(self) -> None:
        if self.credentials_problem:
            raise ToolError(self.credentials_problem)

    # -- lookups -------------------------------------------------------------------------

    def find(self, task_id: str) -> TaskRecord:
        """A record by local id, server task_id or external_task_id."""
        ident = task_id.strip()
        store = self.store
        record = store.get(ident) or store.find_by_task_id(ident) or store.find_by_external_id(ident)
        if record is None:
            raise ToolError(
                f"no task {plain(ident)} in the history (give a local id, a task_id or an external_task_id)"
            )
        return record

    def image_files(self, record: TaskRecord) -> list[Path]:
        folder = self.store.task_dir(record.local_id)
        return [folder / name for name in record.image_paths if (folder / name).exists()]

    def resolve_images(self, params: dict[str, Any]) -> list[Parent]:
        """Image fields given as PATH, URL or TASK[:INDEX] become files or URLs; returns the lineage."""
        parents: list[Parent] = []
        for name, value in params.items():
            if "image" not in name:
                continue
            values = value if isinstance(value, list) else [value]
            resolved = []
            for item in values:
                if not isinstance(item, str):
                    resolved.append(item)
                    continue
                try:
                    found = resolve_image(self.store, item)
                except ImageRefError as exc:
                    raise ToolError(f"{name}: {plain(exc)}") from None
                resolved.append(found.source)
                if found.parent is not None and found.parent not in parents:
                    parents.append(found.parent)
            params[name] = resolved if isinstance(value, list) else resolved[0]
        return parents

    def over_budget(self, request: Request) -> str | None:
        """Why this create would pass the config's [budget], or None."""
        settings = self.settings
        if settings.budget_daily is None and settings.budget_session is None:
            return None
        caps = self.workbench.caps
        estimate = price(caps, request.kind, request.params()).units
        today = spent_today(self.store, caps)
        session = spent_by(self.store, caps, self.made)
        overruns = over_budget(settings, estimate, today=today, session=session)
        return "; ".join(str(o) for o in overruns) or None

    def task_json(self, record: TaskRecord) -> dict[str, Any]:
        return {
            "local_id": record.local_id,
            "kind": record.kind,
            "status": record.status,
            "status_msg": plain(record.status_msg),
            "task_id": record.task_id,
            "external_task_id": record.external_task_id,
            "model": record.model,
            "prompt": plain(record.prompt),
            "n": record.n,
            "params": record.params,
            "created_at": _iso(record.created_at),
            "finished_at": _iso(record.finished_at),
            "units": record.units,
            "error_code": record.error_code,
            "note": plain(record.note),
            "parents": [dict(parent) for parent in record.parents],
            "images": [str(p) for p in self.image_files(record)],
        }

    # -- following -----------------------------------------------------------------------

    async def refresh(self, record: TaskRecord) -> TaskRecord:
        """Bring a task that is not final up to date, and make sure it is being followed."""
        workbench = self.workbench
        if record.is_final or record.status == "queued":
            return record
        self.require_credentials()
        if record.task_id is None:
            if record.local_id in {r.local_id for r in workbench.running()}:
                return record  # its create is on its way in this process
            return await workbench.confirm(record)
        try:
            task = await workbench.client.get(record.task_id, kind=record.kind)
        except KlingError as exc:
            raise ToolError(f"could not refresh the task: {plain(exc)}") from None
        updated = workbench.apply(StatusChange(task=task, kind=record.kind, previous_status=record.status))
        record = updated or record
        if not record.is_final:
            workbench.tracker.track(task.task_id, record.kind, task.task_status)
            workbench.tracker.wake()
        return record

    async def wait(self, record: TaskRecord, timeout: float) -> TaskRecord:
        record = await self.refresh(record)
        if not record.is_final:
            waiter: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(record.local_id, []).append(waiter)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # not wait_for: see Tracker._pause
                    record = await waiter
            record = self.store.get(record.local_id) or record
        if record.status == "succeed":
            record = await self.workbench.save_images(record)
        return record


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@contextlib.asynccontextmanager
async def open_service(settings: Settings, store: HistoryStore, *, sandbox: bool) -> AsyncIterator[Service]:
    """A client, a workbench that follows its tasks and saves their images, and the tools' state."""
    server = None
    problem = None
    caps = settings.capabilities()
    if sandbox:
        from kling_tui.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

        server = await asyncio.to_thread(Sandbox(SandboxConfig()).start)
        auth: Auth = ApiKeyAuth(DEFAULT_API_KEY)
        assert server.base_url is not None
        base_url = server.base_url
    else:
        base_url = settings.base_url
        try:
            auth = auth_from(Credentials(settings.access_key, settings.secret_key, settings.api_key))
        except MissingCredentials:
            auth = ApiKeyAuth("-")  # never used: every tool that would send checks first
            problem = (
                "no Kling credentials: set KLING_ACCESS_KEY and KLING_SECRET_KEY, or KLING_API_KEY, in the "
                "MCP server's environment, or put them in kling-tui's config file"
            )
    try:
        client = KlingClient(base_url, auth, caps=caps)
        fast = is_loopback(client.base_url)  # the sandbox: tasks take seconds, poll briskly
        interval = (0.1, 0.5) if fast else (settings.poll_interval, max(5.0, settings.poll_interval))
        tracker = Tracker(client, min_interval=interval[0], max_interval=interval[1])
        budget = SlotBudget(settings.concurrency)
        workbench = Workbench(client, store, caps, tracker=tracker, auto_download=True, budget=budget)
        async with client:
            following = asyncio.create_task(workbench.follow())
            try:
                yield Service(workbench, settings, problem)
            finally:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
                await workbench.aclose()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


def build_server(service: Service) -> MCPServer:
    """The MCP server and its tools over `service`."""
    # WARNING: at INFO the SDK would log every HTTP request of the client to stderr.
    server = MCPServer("kling-tui", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    def list_models() -> dict[str, Any]:
        """The image models, what each can do and the resource units it charges per image."""
        caps = service.workbench.caps
        models = []
        for model in caps.models.values():
            data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(model).items()}
            models.append(data)
        return {"default_model": caps.default_model, "endpoints": list(PATHS), "models": models}

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False, open_world_hint=True))
    async def generate(
        prompt: str | None = None,
        kind: str = "generation",
        model_name: str | None = None,
        n: int | None = None,
        aspect_ratio: str | None = None,
        negative_prompt: str | None = None,
        resolution: str | None = None,
        image: str | None = None,
        fields: dict[str, Any] | None = None,
        wait: bool = False,
        timeout_seconds: float = WAIT_DEFAULT_SECONDS,
    ) -> dict[str, Any]:
        """Create an image task (it costs resource units). `kind` is the endpoint (see list_models'
        endpoints; "multi" takes `fields.subject_images`, a list). `fields` holds any other request
        field of that endpoint (image_reference, image_fidelity, subject_images, scene_image, ...).
        Image values are http(s) URLs, local .png/.jpg paths, or "<task id>:<image number>" (a local
        id, task_id or external_task_id; image 1 when the number is left out) for an image of an
        earlier task, which is then recorded as the new task's parent. With `wait`, returns once the task has ended (or after
        timeout_seconds) with the paths of its saved images."""
        service.require_credentials()
        if kind not in PATHS:
            raise ToolError(f"kind: must be one of {', '.join(PATHS)} (got {plain(kind)})")
        params: dict[str, Any] = dict(fields or {})
        given = dict(
            prompt=prompt,
            model_name=model_name,
            n=n,
            aspect_ratio=aspect_ratio,
            negative_prompt=negative_prompt,
            resolution=resolution,
            image=image,
        )
        params.update({k: v for k, v in given.items() if v is not None})
        if "external_task_id" in params:
            raise ToolError("external_task_id: kling-tui gives every task its own")
        parents = service.resolve_images(params)
        try:
            request = request_from_params(kind, params)
        except TypeError as exc:
            raise ToolError(f"not a {kind} request: {plain(exc)}") from None
        request.parents = parents
        unknown = set(params) - {f.name for f in dataclasses.fields(request) if f.init and f.name not in NOT_PARAMS}
        if unknown:
            raise ToolError(f"not fields of a {kind} request: {', '.join(sorted(unknown))}")
        try:
            await asyncio.to_thread(service.workbench.check, request)
        except InvalidRequest as exc:
            rules = "; ".join(f"{p.field}: {p.rule}" for p in exc.problems)
            raise ToolError(f"invalid request, nothing was sent: {plain(rules)}") from None
        overrun = await asyncio.to_thread(service.over_budget, request)
        if overrun:
            raise ToolError(f"not sent: {overrun} (the user's [budget] in kling-tui's config)")
        record = await service.workbench.submit(request)  # recorded before it is sent
        service.made.append(record.local_id)
        if record.status == "not_created":
            raise ToolError(f"the task was not created: {plain(record.status_msg)} (local id {record.local_id})")
        if wait:
            record = await service.wait(record, _timeout(timeout_seconds))
        return service.task_json(record)

    @server.tool(annotations=read_only)
    async def get_task(task_id: str) -> dict[str, Any]:
        """One task, refreshed from the server while it runs. `task_id`: a local id, the server's
        task_id or the external_task_id."""
        return service.task_json(await service.refresh(service.find(task_id)))

    @server.tool(annotations=read_only)
    async def wait_for_task(task_id: str, timeout_seconds: float = WAIT_DEFAULT_SECONDS) -> dict[str, Any]:
        """Wait until the task has succeeded or failed (or timeout_seconds pass), saving its
        images; returns the task with the paths of its images."""
        return service.task_json(await service.wait(service.find(task_id), _timeout(timeout_seconds)))

    @server.tool(annotations=read_only)
    def search_history(words: str = "", limit: int = 20, status: str | None = None) -> dict[str, Any]:
        """Tasks in the history, newest first. `words`: every word must start a word of the task's
        prompt, negative prompt, note, failure message, model or ids; empty lists the newest.
        `status`: submitted, processing, succeed, failed, not_created, queued or pending."""
        if words and not search_terms(words):
            raise ToolError("words: give at least one word (letters or digits)")
        limit = max(1, min(SEARCH_LIMIT_MAX, limit))
        store = service.store
        rows = store.recent(limit, words=words or None, status=status or None)
        total = store.count(words=words or None, status=status or None)
        tasks = [
            {
                "local_id": row.local_id,
                "status": row.status,
                "prompt": plain(row.prompt),
                "model": row.model,
                "n": row.n,
                "task_id": row.task_id,
                "created_at": _iso(row.created_at),
                "images": row.image_count,
            }
            for row in rows
        ]
        return {"total": total, "tasks": tasks}

    @server.tool(annotations=read_only)
    async def get_images(task_id: str, include_content: bool = False) -> list[TextContent | Image]:
        """The saved image files of a finished task (saved now if they were not yet). With
        include_content, the images themselves follow (each up to 2 MB)."""
        record = service.find(task_id)
        if record.status == "succeed":
            record = await service.workbench.save_images(record)
        files = service.image_files(record)
        summary = {"local_id": record.local_id, "status": record.status, "images": [str(p) for p in files]}
        if record.status != "succeed":
            summary["note"] = "no images: the task has not succeeded"
        out: list[TextContent | Image] = [TextContent(type="text", text=json.dumps(summary, ensure_ascii=True))]
        if include_content:
            out += [Image(path=path) for path in files if path.stat().st_size <= INLINE_IMAGE_BYTES]
        return out

    return server


def _timeout(seconds: float) -> float:
    return max(0.0, min(WAIT_MAX_SECONDS, seconds))


async def serve(settings: Settings, store: HistoryStore, *, sandbox: bool) -> None:
    """Serve MCP on stdin/stdout until the client closes the connection."""
    async with open_service(settings, store, sandbox=sandbox) as service:
        await build_server(service).run_stdio_async()


def run(*, sandbox: bool) -> int:
    """`kling-tui mcp`: stdout carries the protocol, so everything else goes to stderr or the log."""
    from kling_tui.base.locations import history_dir
    from kling_tui.config import load_settings

    settings = load_settings()
    sandbox = sandbox or settings.sandbox
    for warning in settings.warnings:
        print(f"kling-tui: warning: {plain(warning)}", file=sys.stderr)
    with HistoryStore(history_dir(sandbox=sandbox)) as store:
        for warning in store.warnings:
            print(f"kling-tui: warning: {plain(warning)}", file=sys.stderr)
        try:
            asyncio.run(serve(settings, store, sandbox=sandbox))
        except KeyboardInterrupt:
            pass
    return 0
