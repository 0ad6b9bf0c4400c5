"""The in-memory service behind the sandbox: tasks, their lifecycle, slots, units, counters.

Plain Python, no HTTP: the Starlette app (app.py) translates requests into these calls
and `ApiError`s into Kling's error envelope. Everything is guarded by one lock because the
server's event loop and a test's thread (clock, faults, lookups) use it at the same time.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kling_tui.api.capabilities import KIND_ENDPOINTS, Capabilities, Kind, default_capabilities, discontinued_message
from kling_tui.api.errors import Problem
from kling_tui.api.prices import price
from kling_tui.api.validation import (
    EXPAND_SIDES,
    decode_image_field,
    expanded_size,
    image_size,
    images_made,
    validate_expand,
    validate_generation,
    validate_multi_image,
    validate_omni,
)
from kling_tui.sandbox.clock import SandboxClock
from kling_tui.sandbox.config import SandboxConfig
from kling_tui.sandbox.faults import ENDPOINTS, Faults
from kling_tui.sandbox.render import PLAIN, ImageCache, Look, output_size, size_for_ratio

# The model-served endpoint of each kind (expansion takes no model).
URL_INPUT_SIZE = (1024, 1024)  # what the sandbox assumes of an input given by URL (never fetched)
FAIL_MARK = "#fail"
BLOCK_MARK = "#block"
FAIL_MESSAGE = "Failure requested by the prompt (#fail)"
DAY = 86400.0
COUNTER_KEYS = (
    "tasks_created",
    "invalid",  # refused by validation (bad JSON, broken rules, bad paging or times)
    "external_id_reuse",
    "blocked",  # refused for #block
    "over_concurrency",  # refused with 1303
    "balance_refused",  # refused with 1102
    "auth_failed",
    "costs_rate_limited",
    "faults",
    "callbacks_sent",
    "callbacks_failed",
)


class ApiError(Exception):
    """A request the service refuses: Kling's code and the message it answers with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def format_units(units: float) -> str:
    """Kling's string form: "4", "2.5" (no trailing ".0")."""
    return str(int(units)) if float(units).is_integer() else repr(float(units))


@dataclass
class SandboxTask:
    task_id: str
    kind: Kind
    prompt: str
    n: int
    units: float
    created: float  # sandbox clock, seconds
    base_url: str
    width: int
    height: int
    external_task_id: str | None = None
    callback_url: str | None = None
    watermark: bool | None = None
    look: Look = PLAIN
    result_type: str | None = None  # omni-image only
    result_type_at: str = "task_result"
    will_fail: bool = False
    status: str = "submitted"
    status_msg: str = ""
    updated: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_final(self) -> bool:
        return self.status in ("succeed", "failed")

    def image_url(self, index: int) -> str:
        return f"{self.base_url}/images/{self.task_id}/{index}.png"

    def created_json(self) -> dict[str, Any]:
        """The create answer's `data`: the fields kling-image-api.md shows for it."""
        return {
            "task_id": self.task_id,
            "task_status": self.status,
            "task_info": self._info(),
            "created_at": int(self.created * 1000),
            "updated_at": int(self.updated * 1000),
        }

    def to_json(self) -> dict[str, Any]:
        """The full task object of query answers and callbacks."""
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": self.status,
            "task_status_msg": self.status_msg,
            "task_info": self._info(),
            "created_at": int(self.created * 1000),
            "updated_at": int(self.updated * 1000),
        }
        if self.is_final:
            data["final_unit_deduction"] = format_units(self.units if self.status == "succeed" else 0)
        if self.status == "succeed":
            data["task_result"] = {"images": [{"index": i, "url": self.image_url(i)} for i in range(self.n)]}
            if self.result_type is not None and self.result_type_at == "task_result":
                data["task_result"]["result_type"] = self.result_type
        if self.result_type is not None and self.result_type_at == "task":
            data["result_type"] = self.result_type
        if self.watermark is not None:
            data["watermark_info"] = {"enabled": self.watermark}
        return data

    def _info(self) -> dict[str, Any]:
        return {"external_task_id": self.external_task_id} if self.external_task_id else {}


@dataclass(frozen=True)
class CallbackEvent:
    url: str
    task_id: str
    body: bytes


class SandboxState:
    def __init__(self, config: SandboxConfig | None = None, clock: SandboxClock | None = None) -> None:
        self.config = config or SandboxConfig()
        self.clock = clock or SandboxClock()
        self.faults = Faults(self.config.seed)
        self.capabilities: Capabilities = self.config.capabilities or default_capabilities()
        self.images = ImageCache()
        self.started = self.clock.now()
        self._lock = threading.RLock()
        self._tasks: dict[str, SandboxTask] = {}
        self._order: list[SandboxTask] = []  # creation order
        self._active: list[SandboxTask] = []  # not final yet: they hold slots
        self._external: dict[tuple[str, str], SandboxTask] = {}
        self._events: deque[CallbackEvent] = deque()
        self._counters: Counter[str] = Counter({key: 0 for key in ENDPOINTS})
        for key in COUNTER_KEYS:
            self._counters[key] = 0
        self._ids = random.Random(self.config.seed)
        self._costs_times: deque[float] = deque()
        self._units_used = 0.0

    # -- counters -------------------------------------------------------------------------

    def count(self, key: str, by: int = 1) -> None:
        with self._lock:
            self._counters[key] += by

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    # -- lookups --------------------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, SandboxTask]:
        """A snapshot of every task by id."""
        with self._lock:
            return dict(self._tasks)

    def task(self, task_id: str) -> SandboxTask | None:
        with self._lock:
            return self._tasks.get(task_id)

    def slots_in_use(self) -> int:
        with self._lock:
            self.tick()
            return sum(t.n for t in self._active)

    def find(self, kind: Kind, ident: str) -> SandboxTask:
        with self._lock:
            self.tick()
            task = self._tasks.get(ident)
            if task is None or task.kind != kind:
                task = self._external.get((kind, ident))
            if task is None:
                raise ApiError(1201, f"Task not found by id/external id: {ident}")
            return task

    def page(self, kind: Kind, page_num: int, page_size: int) -> list[SandboxTask]:
        with self._lock:
            self.tick()
            newest_first = [t for t in reversed(self._order) if t.kind == kind]
            start = (page_num - 1) * page_size
            return newest_first[start : start + page_size]

    # -- lifecycle ------------------------------------------------------------------------

    def tick(self) -> None:
        """Move every unfinished task to where the sandbox clock says it is now."""
        cfg = self.config
        with self._lock:
            if not self._active:
                return
            now = self.clock.now()
            still: list[SandboxTask] = []
            for task in self._active:
                processing_at = task.created + cfg.submitted_seconds
                done_at = processing_at + cfg.processing_seconds
                if task.status == "submitted" and now >= processing_at:
                    task.status, task.updated = "processing", processing_at
                    self._queue_callback(task)
                if task.status == "processing" and now >= done_at:
                    if task.will_fail:
                        task.status, task.status_msg = "failed", FAIL_MESSAGE
                    else:
                        task.status = "succeed"
                        self._units_used += task.units
                    task.updated = done_at
                    self._queue_callback(task)
                if not task.is_final:
                    still.append(task)
            self._active = still

    def _queue_callback(self, task: SandboxTask) -> None:
        if task.callback_url:
            body = json.dumps(task.to_json(), separators=(",", ":")).encode("utf-8")
            self._events.append(CallbackEvent(task.callback_url, task.task_id, body))

    def take_callbacks(self) -> list[CallbackEvent]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
            return events

    # -- creating -------------------------------------------------------------------------

    def _validate(self, kind: Kind, payload: Any) -> list[Problem]:
        caps = self.capabilities
        if kind == "multi":
            return validate_multi_image(payload, caps)
        if kind == "omni":
            return validate_omni(payload, caps)
        if kind == "expand":
            return validate_expand(payload)
        return validate_generation(payload, caps)

    def create(self, kind: Kind, payload: Any, base_url: str) -> SandboxTask:
        caps = self.capabilities
        problems = self._validate(kind, payload)
        if problems:
            self.count("invalid")
            raise ApiError(problems[0].code, "; ".join(str(p) for p in problems))
        prompt = payload.get("prompt") or ""
        if BLOCK_MARK in prompt:
            self.count("blocked")
            raise ApiError(1301, f"Content security policy triggered (the prompt contains {BLOCK_MARK})")

        n = images_made(kind, payload)
        resolution = (payload.get("resolution") or "1k") if kind in ("generation", "omni") else "1k"
        look = PLAIN
        result_type = None
        if kind == "expand":
            width, height, look = self._expansion(payload)
        else:
            model = caps.get(payload.get("model_name") or caps.default_for(KIND_ENDPOINTS[kind]))
            assert model is not None  # validation resolved it
            if self.config.retire_by_date and model.retired_on(self.today()):
                self.count("invalid")
                raise ApiError(1203, discontinued_message(model.name))
            if kind == "omni":
                width, height, look = self._omni(payload, resolution, n)
                result_type = payload.get("result_type") or "single"
            else:
                width, height = self._size(kind, payload, model.restyle, resolution)
        units = price(caps, kind, payload).units  # the table the client's estimate reads
        ext = payload.get("external_task_id")

        with self._lock:
            self.tick()
            if ext and (kind, ext) in self._external:
                self._counters["external_id_reuse"] += 1
                raise ApiError(1201, f"external_task_id already used: {ext}")
            reserved = sum(t.units for t in self._active)
            if units > self.config.total_units - self._units_used - reserved:
                self._counters["balance_refused"] += 1
                raise ApiError(1102, "Account balance not enough")
            in_use = sum(t.n for t in self._active)
            if in_use + n > self.config.slots:
                self._counters["over_concurrency"] += 1
                raise ApiError(1303, "parallel task over resource pack limit")
            now = self.clock.now()
            watermark = payload.get("watermark_info")
            task = SandboxTask(
                task_id=self._new_id(),
                kind=kind,
                prompt=prompt,
                n=n,
                units=units,
                created=now,
                updated=now,
                base_url=base_url.rstrip("/"),
                width=width,
                height=height,
                external_task_id=ext,
                callback_url=payload.get("callback_url"),
                watermark=watermark.get("enabled") if isinstance(watermark, Mapping) else None,
                look=look,
                result_type=result_type,
                result_type_at=self.config.result_type_at,
                will_fail=FAIL_MARK in prompt,
                payload=dict(payload),
            )
            self._tasks[task.task_id] = task
            self._order.append(task)
            self._active.append(task)
            if ext:
                self._external[(kind, ext)] = task
            self._counters["tasks_created"] += 1
            self._queue_callback(task)
            return task

    def today(self) -> dt.date:
        """The sandbox clock's date (UTC), for retirement dates."""
        return dt.datetime.fromtimestamp(self.clock.now(), dt.UTC).date()

    def _new_id(self) -> str:
        while True:
            task_id = str(self._ids.randrange(10**17, 10**18))  # 18 digits, no leading zero
            if task_id not in self._tasks:
                return task_id

    @staticmethod
    def _size(kind: Kind, payload: Mapping[str, Any], restyle: bool, resolution: str) -> tuple[int, int]:
        image = payload.get("image") if kind == "generation" else None
        if image and restyle and payload.get("image_reference") is None:
            # Restyle keeps the input's size; a URL's content is never fetched.
            raw = None if image.startswith(("http://", "https://")) else decode_image_field(image)
            info = image_size(raw) if raw else None
            if info:
                return info[1], info[2]
            return output_size(payload.get("aspect_ratio"), "1k")
        return output_size(payload.get("aspect_ratio"), resolution)

    @staticmethod
    def _input(value: Any) -> tuple[bytes | None, tuple[int, int] | None]:
        """An input image's bytes and size; (None, None) for a URL, whose content is never fetched."""
        if not isinstance(value, str) or value.startswith(("http://", "https://")):
            return None, None
        raw = decode_image_field(value)
        info = image_size(raw) if raw else None
        return (raw, (info[1], info[2])) if info else (None, None)

    def _omni(self, payload: Mapping[str, Any], resolution: str, n: int) -> tuple[int, int, Look]:
        images = payload.get("image_list") or []
        first = images[0].get("image") if images else None
        raw, size = self._input(first)
        ratio = payload.get("aspect_ratio")
        if ratio in (None, "auto"):
            # The model picks the ratio from the inputs: here, the first input's (1:1 without one).
            width, height = size_for_ratio(size[0] / size[1] if size else 1.0, resolution)
        else:
            width, height = output_size(ratio, resolution)
        if payload.get("result_type") == "series":
            return width, height, Look("series", raw, total=n)
        if first is None:
            return width, height, PLAIN
        return width, height, Look("edit", raw)

    def _expansion(self, payload: Mapping[str, Any]) -> tuple[int, int, Look]:
        raw, size = self._input(payload.get("image"))
        w, h = size or URL_INPUT_SIZE
        ratios = {side: float(payload[f"{side}_expansion_ratio"]) for side in EXPAND_SIDES}
        width, height = expanded_size(w, h, ratios)
        box = (round(w * ratios["left"]), round(h * ratios["up"]), w, h)
        return width, height, Look("expand", raw, box=box)

    # -- account --------------------------------------------------------------------------

    def allow_costs_request(self) -> bool:
        """At most `costs_rate_limit` requests per second (sandbox clock)."""
        rate = self.config.costs_rate_limit
        window, limit = (1.0, int(rate)) if rate >= 1 else (1.0 / rate, 1)
        with self._lock:
            now = self.clock.now()
            while self._costs_times and self._costs_times[0] <= now - window:
                self._costs_times.popleft()
            if len(self._costs_times) >= max(1, limit):
                return False
            self._costs_times.append(now)
            return True

    def costs(self) -> dict[str, Any]:
        with self._lock:
            self.tick()
            total = self.config.total_units
            remaining = max(0.0, total - self._units_used)
        start_ms = int((self.started - DAY) * 1000)
        pack = {
            "resource_pack_name": "Sandbox image pack",
            "resource_pack_id": "sandbox-image-pack",
            "resource_pack_type": "decreasing_total",
            "total_quantity": total,
            "remaining_quantity": remaining,
            "purchase_time": start_ms,
            "effective_time": start_ms,
            "invalid_time": int((self.started + 365 * DAY) * 1000),
            "status": "online" if remaining > 0 else "runOut",
        }
        return {"code": 0, "msg": "", "resource_pack_subscribe_infos": [pack]}

    # -- result files ---------------------------------------------------------------------

    def image_spec(self, task_id: str, index: int) -> tuple[str, int, int, int, Look] | None:
        """(prompt, index, width, height, look) of a result image still online, else None."""
        with self._lock:
            self.tick()
            task = self._tasks.get(task_id)
            if task is None or task.status != "succeed" or not 0 <= index < task.n:
                return None
            if self.clock.now() >= task.created + self.config.image_lifetime_days * DAY:
                return None
            return task.prompt, index, task.width, task.height, task.look
