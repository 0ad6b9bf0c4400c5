"""Injected failures: errors, slow answers, dropped connections, ambiguous creates, bad JSON."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kling_tui.api.errors import CODES

ENDPOINTS = (
    "create",
    "get",
    "list",
    "multi_create",
    "multi_get",
    "multi_list",
    "omni_create",
    "omni_get",
    "omni_list",
    "expand_create",
    "expand_get",
    "expand_list",
    "costs",
    "image",
)
CREATE_ENDPOINTS = ("create", "multi_create", "omni_create", "expand_create")
KINDS = ("error", "latency", "drop", "created_5002", "malformed")


@dataclass
class Fault:
    endpoint: str = "*"
    kind: str = "error"
    code: int = 5000  # for kind "error"
    rate: float = 1.0  # probability per matching request
    times: int | None = None  # firings left; None = unlimited
    seconds: float | None = None  # for kind "latency"

    def __post_init__(self) -> None:
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be '*' or one of {', '.join(ENDPOINTS)} (got {self.endpoint!r})")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.kind == "error" and self.code not in CODES:
            raise ValueError(f"code {self.code} is not a Kling error code")
        if not 0 <= self.rate <= 1:
            raise ValueError("rate must be from 0 to 1")
        if self.kind == "latency" and not (self.seconds and self.seconds > 0):
            raise ValueError("a latency fault needs seconds > 0")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")

    def matches(self, endpoint: str) -> bool:
        if self.endpoint not in ("*", endpoint):
            return False
        # An ambiguous create only makes sense where a task is created.
        return self.kind != "created_5002" or endpoint in CREATE_ENDPOINTS

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """The active faults; the first one that matches and fires wins."""

    def __init__(self, seed: int | None = None) -> None:
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(
        self,
        endpoint: str = "*",
        kind: str = "error",
        code: int = 5000,
        rate: float = 1.0,
        times: int | None = None,
        seconds: float | None = None,
    ) -> Fault:
        fault = Fault(endpoint=endpoint, kind=kind, code=code, rate=rate, times=times, seconds=seconds)
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_from(self, data: Mapping[str, Any]) -> Fault:
        unknown = set(data) - set(Fault.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return self.add(**data)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def pick(self, endpoint: str) -> Fault | None:
        """The fault to apply to one request on `endpoint`, if any fires."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(endpoint) or fault.times == 0:
                    continue
                if fault.rate < 1 and self._rng.random() >= fault.rate:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None
