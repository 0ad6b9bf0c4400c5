"""One cold start, in a fresh process: `python -m benchmarks.startup_child kling|bare SPAWN_TIME`.

Time runs from SPAWN_TIME (the parent's time.time() just before it started this process)
to the first frame: interpreter start, imports, building the app, mounting, the first
screen update turned into terminal output. The app runs headless at 120x36 and exits from
that first frame. Prints one JSON line: {"first_frame": seconds, "peak_rss_kb": peak RSS by then}.

The peak is this process's own (`VmHWM`): `ru_maxrss` of a process started from a large
parent can carry the parent's high-water mark across the fork.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> None:
    kind, spawned = sys.argv[1], float(sys.argv[2])
    from benchmarks.common import SIZE, FrameProbe

    app = build_kling() if kind == "kling" else build_bare()
    probe = FrameProbe(app)
    result: dict[str, float] = {}

    def first_frame(_painted_at: float) -> None:
        # The very first frame: a waiter registered from a worker would start after it.
        if "first_frame" not in result:
            result["first_frame"] = time.time() - spawned
            # The peak so far: the app's teardown that follows is not part of starting.
            result["peak_rss_kb"] = peak_rss_kb()
            app.exit()

    probe.listeners.append(first_frame)
    app.run(headless=True, size=SIZE)
    print(json.dumps(result), flush=True)


def peak_rss_kb() -> float:
    """This process's own peak resident set (Linux `VmHWM`); elsewhere, ru_maxrss."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def build_kling():
    # The steps of `kling-tui` (ui/launch.py): collector off, settings, image protocol, the app factory.
    import gc

    gc.disable()
    from kling_tui.config import load_settings

    settings = load_settings()
    import textual_image.widget  # noqa: F401  (launch.py imports it before Textual starts)

    from kling_tui.ui.app import make_app

    return make_app(settings, image_protocol="auto", poll_interval=0.5)


def build_bare():
    from textual.app import App
    from textual.widgets import DataTable, Footer, Header

    class Bare(App[None]):
        def compose(self):
            yield Header()
            yield DataTable(cursor_type="row")
            yield Footer()

        def on_mount(self) -> None:
            self.query_one(DataTable).add_columns("Time", "Status", "Model", "n", "Ratio", "Units", "Prompt")

    return Bare()


if __name__ == "__main__":
    main()
