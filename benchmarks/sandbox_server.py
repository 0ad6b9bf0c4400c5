"""The sandbox in its own process, as a real server would be: the app under test keeps the GIL to itself.

    python -m benchmarks.sandbox_server SUBMITTED_SECONDS PROCESSING_SECONDS

Prints the base URL on one line, then serves until stdin closes.
"""

from __future__ import annotations

import sys

from kling_tui.sandbox import SandboxConfig
from kling_tui.sandbox.server import Sandbox

# Enough slots and units that no benchmark is ever refused for capacity.
SLOTS = 100_000
UNITS = 1e9


def main() -> None:
    submitted, processing = float(sys.argv[1]), float(sys.argv[2])
    config = SandboxConfig(
        slots=SLOTS, total_units=UNITS, submitted_seconds=submitted, processing_seconds=processing, seed=7
    )
    with Sandbox(config) as sandbox:
        print(sandbox.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
