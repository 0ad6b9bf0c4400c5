"""The async Kling API client: typed calls, retries that never bill twice, safe downloads.

Reads (query, list, costs) are retried with exponential backoff and full jitter. A create is
only re-sent when the server certainly did not create the task; when that is unclear (a
timeout, a connection lost after sending, 5000/5002, a cut answer) the task is first looked
up by its `external_task_id`, which every create carries.
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import json as jsonlib
import logging
import random
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from kling_tui import __version__ as _version
from kling_tui.api.auth import Auth, JwtAuth
from kling_tui.api.capabilities import Capabilities
from kling_tui.api.download import MAX_DOWNLOAD_BYTES, download_image
from kling_tui.api.errors import CREATE_AMBIGUOUS, KlingError, NetworkError
from kling_tui.api.types import Kind, Request, ResourcePack, Task

log = logging.getLogger(__name__)

PATHS: dict[str, str] = {
    "generation": "/v1/images/generations",
    "multi": "/v1/images/multi-image2image",
    "omni": "/v1/images/omni-image",
    "expand": "/v1/images/editing/expand",
}
COSTS_PATH = "/account/costs"
PAGE_SIZE_MAX = 500
RESIGN_CODES = frozenset({1003, 1004})
# The service refused the create outright: nothing was created, re-sending is safe.
CREATE_NOT_DONE = frozenset({1302, 1303, 5001})
BUSY_CODE = 1303
NOT_FOUND_CODE = 1201
COSTS_DEFAULT_SPAN_MS = 365 * 24 * 3600 * 1000
# A whole request (connect, send, every byte of the answer) ends within this; the per-read
# timeout alone lets a server that sends a byte a second hold a call forever.
DEFAULT_REQUEST_DEADLINE = 60.0
# Decoded size of one API answer: a list page of 500 tasks is a few hundred KB. Beyond this it
# is refused, before a compressed answer can inflate into gigabytes.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


class AnswerTooLarge(NetworkError):
    """The server's answer passed MAX_ANSWER_BYTES once decoded; reading it again would too."""

    def __init__(self, message: str) -> None:
        super().__init__(message, maybe_sent=True)
        self.retryable = False


@dataclass
class ClientStats:
    """What the client did behind the caller's back; for diagnostics and tests."""

    requests: int = 0  # HTTP exchanges with the API
    retries: int = 0  # reads sent again after a retryable failure
    resends: int = 0  # creates sent again (only when certainly not created)
    lookups: int = 0  # lookups by external_task_id after an ambiguous create
    recoveries: int = 0  # ambiguous creates found by lookup (not re-sent)
    resigns: int = 0  # tokens re-signed after 1003/1004


def _kind_of(kind: str) -> str:
    if kind not in PATHS:
        raise ValueError(f"kind must be one of {', '.join(PATHS)} (got {kind!r})")
    return PATHS[kind]


def is_loopback(base_url: str) -> bool:
    """A server on this machine (the sandbox): its tasks take seconds, so callers poll briskly."""
    host = httpx.URL(base_url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KlingClient:
    """One `httpx.AsyncClient` for the client's lifetime; use `async with` or `aclose()`."""

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        busy_backoff: float = 1.0,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        caps: Capabilities | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"the base URL must be an http(s) URL (got {base_url!r})")
        self.base_url = str(url).rstrip("/")
        self.auth = auth
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        # kling-protocol.md: wait at least a second after 1303 (slots free as tasks end).
        self.busy_backoff = busy_backoff
        self.request_deadline = request_deadline
        self.max_answer_bytes = max_answer_bytes
        # A local scheduler re-queues on 1303 itself: it turns this off to hear about it at once.
        self.retry_busy_creates = True
        self.caps = caps
        self.stats = ClientStats()
        # external_task_ids of creates with an unclear outcome: a later create() of the same
        # task (queued again after a 1303, say) may find its id "already used" by that attempt.
        self._maybe_created: set[str] = set()
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"kling-tui/{_version}"},
        )

    def __repr__(self) -> str:
        return f"KlingClient({self.base_url!r}, auth={self.auth!r})"

    async def __aenter__(self) -> KlingClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    # -- public calls -------------------------------------------------------------------

    @staticmethod
    def prepare(request: Request) -> str:
        """Give the request an `external_task_id` if it has none and return it.

        Call it and record the id before `create()` so a crash mid-create can be reconciled
        by looking the id up later.
        """
        if not request.external_task_id:
            request.external_task_id = uuid.uuid4().hex
        return request.external_task_id

    async def create(self, request: Request) -> Task:
        """Submit a task. Raises InvalidRequest (nothing sent) when the request breaks a rule."""
        # Reading and checking local images is blocking work.
        payload, _ = await asyncio.to_thread(request.build, self.caps)
        external_id = self.prepare(request)
        payload["external_task_id"] = external_id
        path = _kind_of(request.kind)
        attempt = 0
        ambiguous_before = external_id in self._maybe_created
        while True:
            try:
                data = await self._request("POST", path, json=payload, is_read=False)
                task = self._task(data, external_id)
                self._maybe_created.discard(external_id)
                return task
            except NetworkError as exc:
                error: KlingError = exc
                ambiguous = exc.maybe_sent
            except KlingError as exc:
                error = exc
                server_error = exc.code is None and (exc.http_status or 0) >= 500
                ambiguous = exc.code in CREATE_AMBIGUOUS or server_error
                # After an unclear attempt, "id already used" means that attempt did create it.
                reused = ambiguous_before and exc.code == NOT_FOUND_CODE
                if not (ambiguous or reused or exc.code in CREATE_NOT_DONE):
                    raise
                if exc.code == BUSY_CODE and not self.retry_busy_creates:
                    raise
                ambiguous = ambiguous or reused
            if ambiguous:
                ambiguous_before = True
                self._maybe_created.add(external_id)
                found = await self._lookup(request.kind, external_id)
                if found is not None:
                    self.stats.recoveries += 1
                    log.info("create recovered by external_task_id lookup (%s)", found.task_id)
                    self._maybe_created.discard(external_id)
                    return found
            if attempt >= self.max_retries:
                raise error
            await self._pause(attempt, error)
            attempt += 1
            self.stats.resends += 1

    async def get(self, task_id_or_external_id: str, kind: Kind | str = "generation") -> Task:
        """One task by its `task_id` or the caller's `external_task_id`."""
        path = f"{_kind_of(kind)}/{quote(str(task_id_or_external_id), safe='')}"
        return self._task(await self._read("GET", path))

    async def list(self, page: int = 1, page_size: int = 30, kind: Kind | str = "generation") -> list[Task]:
        """One page of tasks, newest first."""
        data = await self._read("GET", _kind_of(kind), params={"pageNum": page, "pageSize": page_size})
        if not isinstance(data, list):
            raise NetworkError("the task list answer is not a list", maybe_sent=True)
        return [Task.from_json(item) for item in data if isinstance(item, dict) and item.get("task_id") is not None]

    async def list_all(
        self, kind: Kind | str = "generation", page_size: int = PAGE_SIZE_MAX, max_pages: int = 1000
    ) -> builtins.list[Task]:
        """Every task, paging until a page is shorter than `page_size` (the API gives no total)."""
        tasks: builtins.list[Task] = []
        for page in range(1, max_pages + 1):
            batch = await self.list(page=page, page_size=page_size, kind=kind)
            tasks.extend(batch)
            if len(batch) < page_size:
                break
        return tasks

    async def account_costs(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> builtins.list[ResourcePack]:
        """Resource packs active within the time range (default: the past year until now)."""
        end = end_ms if end_ms is not None else int(time.time() * 1000)
        start = start_ms if start_ms is not None else max(0, end - COSTS_DEFAULT_SPAN_MS)
        data = await self._read("GET", COSTS_PATH, params={"start_time": start, "end_time": end})
        infos = data.get("resource_pack_subscribe_infos") if isinstance(data, dict) else None
        return [ResourcePack.from_json(item) for item in infos or [] if isinstance(item, dict)]

    async def download(
        self, url: str, dest_dir: str | Path, filename: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES
    ) -> Path:
        """Save a result image; see download.download_image. Never sends credentials."""
        return await download_image(self._http, url, dest_dir, filename, max_bytes, deadline=self.request_deadline)

    # -- plumbing -------------------------------------------------------------------------

    def _task(self, data: Any, external_id: str | None = None) -> Task:
        if not isinstance(data, dict) or data.get("task_id") is None:
            raise NetworkError("the answer carries no task", maybe_sent=True)
        task = Task.from_json(data)
        if task.external_task_id is None and external_id:
            task.external_task_id = external_id
        return task

    async def _lookup(self, kind: str, external_id: str) -> Task | None:
        """The task created with `external_id`, or None when the service has none."""
        self.stats.lookups += 1
        try:
            return await self.get(external_id, kind)
        except KlingError as exc:
            if exc.code == NOT_FOUND_CODE:
                return None
            raise

    async def _read(self, method: str, path: str, *, params: dict[str, Any] | None = None) -> Any:
        attempt = 0
        while True:
            try:
                return await self._request(method, path, params=params, is_read=True)
            except KlingError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    raise
                await self._pause(attempt, exc)
                attempt += 1
                self.stats.retries += 1

    async def _pause(self, attempt: int, error: KlingError) -> None:
        # Full jitter: spreads clients that failed together over the whole window.
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        if error.code == BUSY_CODE:
            delay = max(delay, min(self.busy_backoff, self.max_backoff))
        log.debug("retrying in %.2fs after %s", delay, error)
        await asyncio.sleep(delay)

    async def _request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None, is_read: bool
    ) -> Any:
        try:
            return await self._exchange(method, path, params=params, json=json, is_read=is_read)
        except KlingError as exc:
            if exc.code not in RESIGN_CODES or not isinstance(self.auth, JwtAuth):
                raise
            # The token is not (or no longer) valid for the server's clock: sign anew, once.
            self.auth.invalidate()
            self.stats.resigns += 1
            return await self._exchange(method, path, params=params, json=json, is_read=is_read)

    async def _exchange(
        self, method: str, path: str, *, params: dict[str, Any] | None, json: Any, is_read: bool
    ) -> Any:
        where = f"{method} {path}"
        headers = {"Authorization": self.auth.authorization_header()}
        self.stats.requests += 1
        try:
            async with asyncio.timeout(self.request_deadline):
                status, reason, raw = await self._fetch(method, path, where, params=params, json=json, headers=headers)
        except TimeoutError:
            raise NetworkError(
                f"no complete answer within {self.request_deadline:g} s ({where})", maybe_sent=True
            ) from None
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            raise NetworkError(f"timed out connecting to the server ({where})", maybe_sent=False) from None
        except httpx.TimeoutException:
            raise NetworkError(f"timed out waiting for the answer ({where})", maybe_sent=True) from None
        except httpx.ConnectError:
            raise NetworkError(f"cannot connect to the server ({where})", maybe_sent=False) from None
        except httpx.TransportError as exc:
            raise NetworkError(f"connection lost ({where}: {type(exc).__name__})", maybe_sent=True) from None
        try:
            body = jsonlib.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("code"), int):
            if status >= 400:
                # Not Kling's envelope: a proxy or gateway answered.
                raise KlingError.from_response(status, None, f"HTTP {status} {reason}".strip(), None, is_read=is_read)
            raise NetworkError(f"the server's answer is not valid Kling JSON ({where})", maybe_sent=True)
        code = body["code"]
        request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
        if code != 0:
            message = body.get("message")
            raise KlingError.from_response(
                status, code, message if isinstance(message, str) else None, request_id, is_read=is_read
            )
        return body.get("data")

    async def _fetch(
        self, method: str, path: str, where: str, *, params: Any, json: Any, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        """(HTTP status, reason, decoded body): read as a stream and decoded here, a bounded
        piece at a time, so an answer beyond max_answer_bytes is refused before it inflates."""
        headers = {**headers, "Accept-Encoding": "gzip, deflate"}
        request = self._http.build_request(method, self.base_url + path, params=params, json=json, headers=headers)
        response = await self._http.send(request, stream=True)
        body = _BoundedBody(self.max_answer_bytes, response.headers.get("content-encoding", ""), where)
        try:
            async for raw in response.aiter_raw():
                body.feed(raw)
        finally:
            await response.aclose()
        return response.status_code, response.reason_phrase, body.finish()


class _BoundedBody:
    """An answer's body decoded (identity, gzip or deflate) into at most `limit` bytes."""

    PIECE = 1024 * 1024

    def __init__(self, limit: int, encoding: str, where: str) -> None:
        self.limit = limit
        self.where = where
        self.parts: builtins.list[bytes] = []
        self.size = 0
        coding = encoding.strip().lower()
        if coding in ("", "identity"):
            self._inflate: Any = None
        elif coding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise NetworkError(
                f"the server's answer has an unknown content-encoding {encoding!r} ({where})", maybe_sent=True
            )

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise AnswerTooLarge(
                f"the server's answer is larger than {self.limit // (1024 * 1024)} MB once decoded; refused ({self.where})"
            )
        self.parts.append(data)

    def feed(self, raw: bytes) -> None:
        if self._inflate is None:
            self._add(raw)
            return
        try:
            while raw:
                self._add(self._inflate.decompress(raw, min(self.PIECE, self.limit - self.size + 1)))
                raw = self._inflate.unconsumed_tail
        except zlib.error:
            raise NetworkError(
                f"the server's answer could not be decompressed ({self.where})", maybe_sent=True
            ) from None

    def finish(self) -> bytes:
        if self._inflate is not None:
            try:
                self._add(self._inflate.flush(self.limit - self.size + 1))
            except zlib.error:
                raise NetworkError(
                    f"the server's answer could not be decompressed ({self.where})", maybe_sent=True
                ) from None
        return b"".join(self.parts)
