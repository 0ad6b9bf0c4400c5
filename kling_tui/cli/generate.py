"""`kling-tui generate`: create a task (recorded before it is sent), optionally wait and save its images."""

from __future__ import annotations

import argparse
import datetime as dt

from kling_tui.api.types import GenerationRequest
from kling_tui.cli.fan_out import submit_templated
from kling_tui.cli.output import Console
from kling_tui.cli.session import OPTION_FOR_FIELD
from kling_tui.config import Settings
from kling_tui.history.retired import load_retired
from kling_tui.history.store import HistoryStore


async def cmd_generate(args: argparse.Namespace, settings: Settings, store: HistoryStore, console: Console) -> int:
    caps = settings.capabilities()
    remembered = load_retired(sandbox=args.sandbox)
    today = dt.date.today()
    request = GenerationRequest(
        prompt=args.prompt,
        # Like the form: the first model of the preference list the table and the service still serve.
        model_name=args.model or caps.preferred_model(today, frozenset(remembered)),
        negative_prompt=args.negative,
        image=args.image,
        image_reference=args.image_reference,
        image_fidelity=args.image_fidelity,
        human_fidelity=args.human_fidelity,
        resolution=args.resolution,
        n=args.n,
        aspect_ratio=args.aspect_ratio,
        callback_url=args.callback_url,
        external_task_id=args.external_task_id,
    )
    return await submit_templated(args, settings, store, console, request, OPTION_FOR_FIELD)
