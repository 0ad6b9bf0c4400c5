"""Make the README's screenshots from the real app on the in-process sandbox.

    python screenshots/make_screenshots.py

Writes SVG files next to this script, at 120x36, with the halfcell image renderer.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = (120, 36)


async def wait_for(pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out while preparing a screenshot")
        await pilot.pause(0.05)


async def main() -> None:
    os.environ["KLING_TUI_HOME"] = tempfile.mkdtemp(prefix="kling-tui-shots-")
    for name in ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_KEY", "KLING_BASE_URL"):
        os.environ.pop(name, None)

    from textual.widgets import Input, TextArea

    from kling_tui.config import load_settings
    from kling_tui.sandbox import Sandbox, SandboxConfig
    from kling_tui.ui.app import make_app
    from kling_tui.ui.choice import Choice

    def save(app, name: str) -> None:
        app.save_screenshot(filename=f"{name}.svg", path=str(HERE))
        print(f"wrote screenshots/{name}.svg")

    with Sandbox(SandboxConfig(submitted_seconds=0.3, processing_seconds=1.0)) as sandbox:
        app = make_app(load_settings(), sandbox=sandbox, image_protocol="halfcell", poll_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            prompts = [
                ("a lighthouse on a cliff at dusk, oil painting", "kling-v1", "16:9", "4"),
                ("a red fox in fresh snow, morning light", "kling-v2", "1:1", "2"),
                ("a neon street market in the rain", "kling-v1-5", "21:9", "1"),
                ("a paper boat on a still pond #fail", "kling-v1", "3:4", "1"),
            ]
            for prompt, model, ratio, n in prompts:
                app.query_one("#prompt", TextArea).text = prompt
                app.query_one("#model", Choice).value = model
                await pilot.pause()
                app.query_one("#aspect", Choice).value = ratio
                app.query_one("#n", Input).value = n
                await pilot.pause(0.3)
                await pilot.press("ctrl+j")
            await wait_for(pilot, lambda: app.table.row_count == 4)
            await wait_for(pilot, lambda: not app.workbench.running())
            app.table.focus()
            app.table.move_cursor(row=app.table.row_count - 1)
            await pilot.pause()
            await wait_for(pilot, lambda: app.preview.shown is not None)
            app.preview.focus()
            await pilot.press("right")
            await wait_for(pilot, lambda: app.preview.shown is not None and app.preview.shown.name == "image-2.png")
            await pilot.pause(0.3)
            save(app, "main")

            app.table.focus()
            await pilot.press("t")
            await wait_for(pilot, lambda: len(getattr(app.screen, "drawn", ())) == 4)
            await pilot.press("right")
            await pilot.pause(0.3)
            save(app, "grid")
            await pilot.press("enter")
            await wait_for(pilot, lambda: getattr(app.screen, "shown", None) is not None)
            await pilot.pause(0.3)
            save(app, "viewer")
            await pilot.press("escape")
            await pilot.press("escape")

            app.table.focus()
            app.table.move_cursor(row=app.table.row_count - 1)
            await pilot.press("v")
            app.table.move_cursor(row=app.table.row_count - 2)
            await pilot.press("v")
            await pilot.pause(1.0)
            save(app, "compare")
            await pilot.press("escape")

            app.query_one("#model", Choice).value = "kling-v2-new"
            app.query_one("#n", Input).value = "12"
            app.form.focus_prompt()
            await pilot.pause(0.5)
            save(app, "form-rules")

            app.table.focus()
            await pilot.press("f1")
            await pilot.pause(0.3)
            save(app, "help")
            await pilot.press("escape")

            await pilot.press("u")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "SummaryScreen")
            await pilot.pause(0.3)
            save(app, "units")
            await pilot.press("escape")

            # Iterating on an image: an Omni edit of the lighthouse (lineage in the preview), then
            # the expansion dialog on the edit.
            app.table.focus()
            app.table.move_cursor(row=app.table.row_count - 1)
            await pilot.press("E")
            app.form.set_prompt("<<<image_1>>> at night, in a storm")
            await pilot.pause(0.3)
            await pilot.press("ctrl+j")
            await wait_for(pilot, lambda: app.table.row_count == 5)
            await wait_for(pilot, lambda: not app.workbench.running())
            await wait_for(pilot, lambda: app.preview.shown is not None)
            app.table.focus()
            await pilot.pause(0.5)
            save(app, "omni-edit")

            await pilot.press("x")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "ExpandDialog")
            await pilot.press("3")
            await pilot.pause(0.3)
            save(app, "expand")

        setup = make_app(load_settings(), image_protocol="halfcell")
        async with setup.run_test(size=SIZE) as pilot:
            await pilot.pause(0.3)
            save(setup, "setup")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    asyncio.run(main())
