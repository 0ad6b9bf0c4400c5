"""Fan one form into many tasks: prompt lines x models x aspect ratios."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Sequence

from kling_tui.api.capabilities import Capabilities
from kling_tui.api.prices import Price, price
from kling_tui.api.types import GenerationRequest, MultiImageRequest, OmniRequest
from kling_tui.api.types import Request as AnyRequest

# The requests a form fans out (an expansion has no model or ratio to vary).
Request = GenerationRequest | MultiImageRequest | OmniRequest


def prompt_lines(prompt: str) -> list[str]:
    return [line.strip() for line in prompt.splitlines() if line.strip()]


def expand(
    request: Request,
    *,
    split_lines: bool = False,
    models: list[str] | None = None,
    ratios: list[str] | None = None,
) -> list[Request]:
    """Every combination, each a separate request; the first is the request itself."""
    prompts = prompt_lines(request.prompt or "") if split_lines else []
    prompts = prompts or [request.prompt or ""]
    model_list = _unique([request.model_name, *(models or [])])
    ratio_list = _unique([request.aspect_ratio, *(ratios or [])])
    out: list[Request] = []
    for prompt, model, ratio in itertools.product(prompts, model_list, ratio_list):
        # A custom external_task_id can name one task only.
        fan = len(prompts) * len(model_list) * len(ratio_list) > 1
        out.append(
            dataclasses.replace(
                request,
                prompt=prompt,
                model_name=model,
                aspect_ratio=ratio,
                external_task_id=None if fan else request.external_task_id,
            )
        )
    return out


def _unique(values: list[str | None]) -> list[str | None]:
    seen: dict[str | None, None] = {}
    for value in values:
        seen.setdefault(value)
    return list(seen)


def request_price(request: AnyRequest, caps: Capabilities) -> Price:
    """The estimate for one request, from the price table (the server's deduction is the truth)."""
    return price(caps, request.kind, request.params())


def estimate_units(requests: Sequence[AnyRequest], caps: Capabilities) -> float:
    """Estimated units of all `requests`, by model, use and resolution."""
    return sum(request_price(request, caps).units for request in requests)


def new_group() -> str:
    return uuid.uuid4().hex[:8]
