"""Settings of the sandbox server; every field has a default good for a demo."""

from __future__ import annotations

from dataclasses import dataclass, field

from kling_tui.api.capabilities import Capabilities

# Demo credentials the sandbox accepts unless told otherwise (not secrets: printed by the CLI).
DEFAULT_ACCESS_KEY = "sandbox-access-key"
DEFAULT_SECRET_KEY = "sandbox-secret-key-not-a-real-secret"  # >= 32 bytes: PyJWT warns below
DEFAULT_API_KEY = "sandbox-api-key"
RESULT_TYPE_PLACES = ("task_result", "task", "none")


@dataclass
class SandboxConfig:
    slots: int = 9  # concurrent image slots of the account (a task holds `n`)
    submitted_seconds: float = 2.0  # time a task stays `submitted`
    processing_seconds: float = 4.0  # then `processing`, then `succeed` or `failed`
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = field(default=DEFAULT_SECRET_KEY, repr=False)
    api_key: str | None = field(default=DEFAULT_API_KEY, repr=False)  # None: API-key auth refused
    webhook_secret: str | None = field(default=None, repr=False)  # signs callbacks when set
    seed: int | None = None  # seeds fault firing and task ids
    costs_rate_limit: float = 1.0  # /account/costs requests per second before 429/1302
    total_units: float = 1000.0  # size of the one resource pack
    capabilities: Capabilities | None = field(default=None, repr=False)  # None: the packaged table
    image_lifetime_days: float = 30.0  # result URLs answer 404 this long after the task's creation
    # Where an omni-image task object carries result_type (undocumented by Kling): "task_result"
    # (beside the images), "task" (a top-level field) or "none" (absent).
    result_type_at: str = "task_result"
    expand_units_per_image: float = 2.0  # image expansion has no model; its price is one 1k image's
