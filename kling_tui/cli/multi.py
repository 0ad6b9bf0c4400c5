"""`kling-tui multi`: multi-image to image (subjects, a scene, a style; each may be an image of a past task)."""

from __future__ import annotations

import argparse

from kling_tui.api.types import MultiImageRequest
from kling_tui.cli.fan_out import submit_templated
from kling_tui.cli.output import Console
from kling_tui.cli.submit import parents_of, resolve_inputs
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore

OPTIONS = {
    "prompt": "PROMPT",
    "model_name": "--model",
    "subject_image_list": "--subject",
    "scene_image": "--scene",
    "style_image": "--style",
    "n": "--n",
    "aspect_ratio": "--aspect-ratio",
    "external_task_id": "--external-task-id",
    "callback_url": "--callback-url",
}


async def cmd_multi(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    subjects = resolve_inputs(store, "--subject", args.subject or [])
    scene = resolve_inputs(store, "--scene", [args.scene])[0] if args.scene else None
    style = resolve_inputs(store, "--style", [args.style])[0] if args.style else None
    request = MultiImageRequest(
        subject_images=[s.source for s in subjects],
        prompt=args.prompt,
        model_name=args.model,
        scene_image=scene.source if scene else None,
        style_image=style.source if style else None,
        n=args.n,
        aspect_ratio=args.aspect_ratio,
        callback_url=args.callback_url,
        external_task_id=args.external_task_id,
        parents=parents_of([*subjects, scene, style]),
    )
    return await submit_templated(args, settings, store, console, request, OPTIONS)
