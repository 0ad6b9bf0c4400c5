"""Start the TUI: settings, image protocol detection, the app (which starts its own sandbox)."""

from __future__ import annotations

SANDBOX_POLL = 0.25  # seconds; loopback requests cost nothing


def run_tui(*, sandbox: bool = False, image_protocol: str | None = None) -> int:
    import gc

    # The imports and the screen allocate a lot and free little: collections would only walk
    # them. The app enables the collector again after its first frame (KlingApp._first_frame_painted).
    gc.disable()
    from kling_tui.config import load_settings

    settings = load_settings()
    protocol = image_protocol or getattr(settings, "image_protocol", None) or "auto"
    if protocol != "none":
        # textual-image asks the terminal what it supports: this must happen before Textual starts.
        import textual_image.widget  # noqa: F401

    from kling_tui.ui.app import make_app

    use_sandbox = sandbox or bool(getattr(settings, "sandbox", False))
    # The sandbox's tasks take seconds: poll it briskly so results show as soon as they exist.
    poll = min(settings.poll_interval, SANDBOX_POLL) if use_sandbox else None
    app = make_app(settings, start_sandbox=use_sandbox, image_protocol=protocol, poll_interval=poll)
    app.run()
    return app.return_code or 0
