"""A local, protocol-faithful Kling image API for demos and tests.

    from kling_tui.sandbox import Sandbox, SandboxConfig
    with Sandbox(SandboxConfig(submitted_seconds=0.1, processing_seconds=0.2)) as sb:
        ...  # talk to sb.base_url with any Kling client

It serves the endpoints of kling-image-api.md and kling-protocol.md: create, query and
list for `/v1/images/generations` and `/v1/images/multi-image2image`, `/account/costs`, and
the PNG files behind result URLs (`/images/{task_id}/{index}.png`, no auth, 404 once 30 days
of sandbox time have passed since the task's creation).

Credentials: an HS256 JWT (iss = access key, signed with the secret key) or the static API
key, as `Authorization: Bearer ...`; defaults are DEFAULT_ACCESS_KEY / DEFAULT_SECRET_KEY /
DEFAULT_API_KEY. JWT `nbf`/`exp` are checked against the sandbox clock.

Behaviour worth knowing:
- Tasks go submitted -> processing -> succeed | failed on the sandbox clock
  (`submitted_seconds`, `processing_seconds`); `state.clock.advance(s)` moves it.
- A prompt containing `#fail` makes the task fail at the end of processing with
  task_status_msg "Failure requested by the prompt (#fail)" (no units charged).
- A prompt containing `#block` is refused at create with HTTP 400, code 1301.
- A task holds `n` of `slots` concurrent slots until it ends; a create that does not fit is
  refused with 429/1303 and nothing is created. Both create endpoints share the slots.
- `external_task_id` finds a task like its task_id; reusing one is refused with 400/1201.
- The one resource pack (`total_units`) goes down by the units of succeeded tasks; a create
  that cannot be paid for is refused with 429/1102. `/account/costs` allows
  `costs_rate_limit` requests per second (more: 429/1302).
- Callbacks: the bare task object is POSTed to `callback_url` on every status change,
  signed with Standard Webhooks headers when `webhook_secret` is set (timestamps on the
  sandbox clock).
- Faults (`state.faults.add(...)` or `POST /_sandbox/faults`): "error" (a Kling code),
  "latency" (answer after `seconds`), "drop" (connection closed mid-answer; nothing done),
  "created_5002" (a create that is done but answered 504/5002), "malformed" (the request is
  handled, the 200 answer's body is cut short).
- Control endpoints without auth: `GET /_sandbox/counters`, `GET|POST|DELETE /_sandbox/faults`,
  `GET|POST /_sandbox/clock` (`{"advance": seconds}`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kling_tui.sandbox.config import DEFAULT_ACCESS_KEY, DEFAULT_API_KEY, DEFAULT_SECRET_KEY, SandboxConfig

if TYPE_CHECKING:
    from kling_tui.sandbox.server import Sandbox
    from kling_tui.sandbox.state import SandboxState

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_API_KEY",
    "DEFAULT_SECRET_KEY",
    "Sandbox",
    "SandboxConfig",
    "SandboxState",
]


def __getattr__(name: str):
    # Deferred so that `kling-tui --help` does not pay for Starlette and uvicorn.
    if name == "Sandbox":
        from kling_tui.sandbox.server import Sandbox

        return Sandbox
    if name == "SandboxState":
        from kling_tui.sandbox.state import SandboxState

        return SandboxState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
