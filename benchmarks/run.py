"""kling-tui benchmarks against the sandbox on loopback: `python benchmarks/run.py [--quick]`.

Prints one table. Every figure is measured in this run next to the figure it is compared
with; the ratio column is value / baseline. See benchmarks/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Row, load_average

SECTIONS = ("startup", "polling", "notice", "preview", "viewer", "input", "search")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and samples (about a minute)")
    parser.add_argument("--repeat", type=int, default=None, help="cold starts per variant (default 15, quick 3)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections (repeatable)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a ratio or count goal fails (goals in absolute time are information)",
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.5, help="app poll interval in seconds (default 0.5, as with --sandbox)"
    )
    return parser.parse_args(argv)


def format_table(rows: list[Row]) -> str:
    header = ("measure", "value", "baseline (same run)", "base", "ratio", "goal", "result")
    lines = []
    for row in rows:
        digits = 0 if row.value >= 100 else 1
        value = f"{row.value:,.{digits}f} {row.unit}"
        base_digits = 0 if row.baseline >= 100 else 1
        base = f"{row.baseline:,.{base_digits}f} {row.unit}"
        ratio = f"{row.ratio:.3g}x"
        lines.append((row.name, value, row.baseline_name, base, ratio, row.goal, row.result))
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    right = {1, 3, 4}

    def fmt(cells) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    sections = args.only or list(SECTIONS)
    repeats = args.repeat or (3 if quick else 15)
    poll = args.poll_interval

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    rows: list[Row] = []
    started = time.perf_counter()
    load_before = load_average()
    log(f"machine {load_before}, {os.cpu_count()} cores")
    if "startup" in sections:
        from benchmarks.common import sandbox_process
        from benchmarks.startup import measure

        log(f"startup and memory: {repeats} cold starts per variant")
        with sandbox_process(submitted=2.0, processing=4.0) as base_url:
            rows += measure(base_url, [0, 10_000, 100_000], repeats, log=log)
    if "polling" in sections:
        from benchmarks import polling

        log("requests per poll cycle")
        rows += polling.measure([1, 50, 400, 500], log=log)
    if "notice" in sections:
        from benchmarks import live

        count = 10 if quick else 30
        log(f"notice latency: {count} tasks, poll interval {poll} s")
        rows += live.notice(count, poll, log=log)
    if "preview" in sections:
        from benchmarks import live

        log("preview latency")
        rows += live.preview(log=log)
    if "viewer" in sections:
        from benchmarks import viewer

        log("grid and full-screen viewer")
        rows += viewer.measure(quick, log=log)
    if "input" in sections:
        from benchmarks import live

        presses = 100 if quick else 400
        log(f"input latency: {presses} keypresses, idle and with 200 tasks in flight")
        rows += live.input_latency(presses, poll, log=log)

    if "search" in sections:
        from benchmarks import search

        log("full-text search: the first page and the count of matches, as the table's filter asks")
        rows += search.measure(5 if quick else 15, log=log)

    print()
    print(
        f"kling-tui benchmarks · Python {platform.python_version()} · {platform.machine()} · "
        f"{'quick' if quick else 'full'} · {time.perf_counter() - started:.0f} s · {os.cpu_count()} cores"
    )
    print(f"machine {load_before} at the start, {load_average()} at the end")
    print(format_table(rows))
    ratio_rows = [row for row in rows if row.ratio_goal]
    failed = [row for row in ratio_rows if not row.ok]
    over = [row.name for row in rows if row.ok is False and not row.ratio_goal]
    print(f"\n{len(ratio_rows) - len(failed)} ratio and count goals hold, {len(failed)} fail.", end="")
    print(f" Absolute goals over (information): {', '.join(over)}." if over else "")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
