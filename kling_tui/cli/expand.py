"""`kling-tui expand`: outpaint an image (a file, a URL or an image of a past task, lineage recorded)."""

from __future__ import annotations

import argparse

from kling_tui.api.types import ExpandRequest
from kling_tui.cli.output import Console
from kling_tui.cli.submit import parents_of, resolve_inputs, submit_request
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore

OPTIONS = {
    "image": "IMAGE",
    "up_expansion_ratio": "--up",
    "down_expansion_ratio": "--down",
    "left_expansion_ratio": "--left",
    "right_expansion_ratio": "--right",
    "expansion_ratio": "--left/--right/--up/--down",
    "prompt": "--prompt",
    "n": "--n",
    "external_task_id": "--external-task-id",
    "callback_url": "--callback-url",
}


async def cmd_expand(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    (image,) = resolve_inputs(store, "IMAGE", [args.image])
    request = ExpandRequest(
        image=image.source,
        up_expansion_ratio=args.up,
        down_expansion_ratio=args.down,
        left_expansion_ratio=args.left,
        right_expansion_ratio=args.right,
        prompt=args.prompt,
        n=args.n,
        callback_url=args.callback_url,
        external_task_id=args.external_task_id,
        parents=parents_of([image]),
    )
    return await submit_request(args, settings, store, console, request, OPTIONS)
