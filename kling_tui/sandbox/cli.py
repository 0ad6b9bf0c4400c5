"""`kling-tui sandbox`: serve the sandbox in the foreground until Ctrl+C."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from typing import Any

from kling_tui.sandbox.config import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_API_KEY,
    DEFAULT_SECRET_KEY,
    RESULT_TYPE_PLACES,
    SandboxConfig,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SandboxConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on, 0 for any free one (default: %(default)s)"
    )
    parser.add_argument(
        "--access-key", default=DEFAULT_ACCESS_KEY, help="access key accepted in JWTs (default: %(default)s)"
    )
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY, help="secret key that signs accepted JWTs")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="static API key accepted as a Bearer token")
    parser.add_argument(
        "--slots", type=int, default=defaults.slots, help="concurrent image slots (default: %(default)s)"
    )
    parser.add_argument(
        "--submitted-seconds",
        type=float,
        default=defaults.submitted_seconds,
        help="seconds a task stays submitted (default: %(default)s)",
    )
    parser.add_argument(
        "--processing-seconds",
        type=float,
        default=defaults.processing_seconds,
        help="seconds a task stays processing (default: %(default)s)",
    )
    parser.add_argument("--webhook-secret", default=None, help="sign callbacks with this whsec_... secret")
    parser.add_argument(
        "--result-type-at",
        choices=RESULT_TYPE_PLACES,
        default=defaults.result_type_at,
        help="where an omni-image task carries result_type: in task_result, at the task's top level, "
        "or nowhere (Kling does not document it; default: %(default)s)",
    )


def config_from(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        slots=args.slots,
        submitted_seconds=args.submitted_seconds,
        processing_seconds=args.processing_seconds,
        access_key=args.access_key,
        secret_key=args.secret_key,
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        result_type_at=args.result_type_at,
    )


def run(args: argparse.Namespace) -> int:
    from kling_tui.sandbox.server import Sandbox

    sandbox = Sandbox(config_from(args))
    try:
        sandbox.start(host=args.host, port=args.port, access_log=True)
    except OSError as exc:
        print(f"kling-tui sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    cfg = sandbox.config
    print(f"Kling sandbox serving at {sandbox.base_url}", flush=True)
    print(f"  access key: {cfg.access_key}")
    print(f"  secret key: {cfg.secret_key}")
    print(f"  API key:    {cfg.api_key}")
    if cfg.webhook_secret:
        print("  callbacks are signed with the given webhook secret")
    print(f"  slots: {cfg.slots}, submitted {cfg.submitted_seconds:g} s, processing {cfg.processing_seconds:g} s")
    print("  prompts with #fail fail, prompts with #block are refused (1301)")
    print("Use it with:")
    print(f"  export KLING_BASE_URL={sandbox.base_url}")
    print(f"  export KLING_ACCESS_KEY={cfg.access_key} KLING_SECRET_KEY={cfg.secret_key}")
    print("Press Ctrl+C to stop.", flush=True)
    stopped = threading.Event()
    previous = _on_sigterm(stopped.set)
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("\nStopping the sandbox.", flush=True)
    finally:
        sandbox.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _on_sigterm(stop: Callable[[], object]) -> Any:
    """Make `kill` stop the server as cleanly as Ctrl+C (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: stop())
