"""Fan one form into many tasks: prompt lines x models x aspect ratios."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kling_tui.api.capabilities import Capabilities
from kling_tui.api.errors import Problem
from kling_tui.api.prices import Price, price
from kling_tui.api.types import GenerationRequest, MultiImageRequest, OmniRequest, TemplateUse
from kling_tui.api.types import Request as AnyRequest
from kling_tui.api.validation import check_prompt
from kling_tui.work import templates

# The requests a form fans out (an expansion has no model or ratio to vary).
Request = GenerationRequest | MultiImageRequest | OmniRequest


def prompt_lines(prompt: str) -> list[str]:
    return [line.strip() for line in prompt.splitlines() if line.strip()]


@dataclass(frozen=True)
class FanOut:
    """What one submit fans out over: prompt lines (when split), each line's template fillings
    (its variables' values, cartesian or zipped), and more models and ratios."""

    split_lines: bool = False
    models: Sequence[str] = ()
    ratios: Sequence[str] = ()
    variables: Mapping[str, Sequence[str]] = field(default_factory=dict)
    zipped: bool = False


def expand(request: Request, fan: FanOut = FanOut()) -> list[Request]:
    """Every combination, each a separate request: prompt lines, each line's template fillings,
    models, ratios. A template is filled only when `fan_out_problems` finds nothing wrong."""
    fill = not fan_out_problems(request, fan)
    prompts: list[tuple[str, TemplateUse | None]] = []
    for line in _lines(request, fan.split_lines):
        template, _ = templates.parse(line)
        if fill and template.is_template:
            for filling in templates.fill(template, fan.variables, zipped=fan.zipped):
                prompts.append((filling.prompt, TemplateUse(line, filling.values)))
        else:
            prompts.append((templates.plain_prompt(line) if fill else line, None))
    model_list = _unique([request.model_name, *fan.models])
    ratio_list = _unique([request.aspect_ratio, *fan.ratios])
    # A custom external_task_id can name one task only.
    several = len(prompts) * len(model_list) * len(ratio_list) > 1
    out: list[Request] = []
    for (prompt, use), model, ratio in itertools.product(prompts, model_list, ratio_list):
        out.append(
            dataclasses.replace(
                request,
                prompt=prompt,
                model_name=model,
                aspect_ratio=ratio,
                external_task_id=None if several else request.external_task_id,
                template=use,
            )
        )
    return out


def _lines(request: Request, split_lines: bool) -> list[str]:
    lines = prompt_lines(request.prompt or "") if split_lines else []
    return lines or [request.prompt or ""]


def fan_out_problems(request: Request, fan: FanOut = FanOut()) -> list[Problem]:
    """What keeps the templates from being filled, or the fan-out from being sent: a brace out
    of place, a variable with no values, too many tasks. Counted, never expanded."""
    variables, zipped = fan.variables, fan.zipped
    parsed = [templates.parse(line) for line in _lines(request, fan.split_lines)]
    found = [p for _, problems in parsed for p in problems]
    if found:
        return found[:1]
    used = {name for template, _ in parsed for name in template.variables}
    unused = [name for name in variables if name not in used]
    for template, _ in parsed:
        found += [p for p in templates.problems(template, variables, zipped=zipped) if p not in found]
    found += templates.unused(unused)
    if found:
        return found
    per_prompt = len(_unique([request.model_name, *fan.models])) * len(_unique([request.aspect_ratio, *fan.ratios]))
    total = sum(templates.count(t, variables, zipped=zipped) for t, _ in parsed) * per_prompt
    return [templates.too_many(total)] if total > templates.MAX_TASKS else []


def check_fan_out(requests: Sequence[Request], caps: Capabilities) -> list[tuple[int, Problem]]:
    """(1-based number, problem) for every rule the requests break. Those that differ only in
    their prompt (a template's fillings) are checked in full once, local images read once;
    each further prompt is checked on its own."""
    found: list[tuple[int, Problem]] = []
    checked: set[str] = set()
    for number, request in enumerate(requests, start=1):
        params = request.params()
        key = repr(sorted((k, v) for k, v in params.items() if k != "prompt"))
        if key in checked:
            inputs = (len(params.get("images", [])), len(params.get("elements", [])))
            problems = check_prompt(request.kind, request.prompt, *inputs)
        else:
            checked.add(key)
            problems = request.problems(caps)
        found += [(number, p) for p in problems]
    return found


def variant_label(number: int, request: Request) -> str:
    """How a problem names the variant it is in: number, model, ratio and template values."""
    values = f", {templates.describe_values(request.template.values)}" if request.template else ""
    return f"variant {number} ({request.model_name}, {request.aspect_ratio}{values})"


def _unique(values: Sequence[str | None]) -> list[str | None]:
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
