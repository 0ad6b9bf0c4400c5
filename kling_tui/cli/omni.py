"""`kling-tui omni`: an Omni image task; inputs are files, URLs or images of past tasks (lineage recorded)."""

from __future__ import annotations

import argparse

from kling_tui.api.types import OmniRequest
from kling_tui.cli.fan_out import submit_templated
from kling_tui.cli.output import Console
from kling_tui.cli.submit import parents_of, resolve_inputs
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore

OPTIONS = {
    "prompt": "PROMPT",
    "model_name": "--model",
    "image_list": "--image",
    "element_list": "--element",
    "resolution": "--resolution",
    "aspect_ratio": "--aspect-ratio",
    "n": "--n",
    "result_type": "--series",
    "series_amount": "--series",
    "external_task_id": "--external-task-id",
    "callback_url": "--callback-url",
}


async def cmd_omni(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    inputs = resolve_inputs(store, "--image", args.image or [])
    request = OmniRequest(
        prompt=args.prompt,
        model_name=args.model,
        images=[i.source for i in inputs],
        elements=list(args.element or []),
        resolution=args.resolution,
        n=args.n,
        result_type="series" if args.series is not None else None,
        series_amount=args.series,
        aspect_ratio=args.aspect_ratio,
        callback_url=args.callback_url,
        external_task_id=args.external_task_id,
        parents=parents_of(inputs),
    )
    return await submit_templated(args, settings, store, console, request, OPTIONS)
