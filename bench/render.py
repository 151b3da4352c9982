"""What formatting an answer while it streams costs the server: parley.rendering.MarkdownStream
against rendering the whole text again at every update.

    .venv/bin/python bench/render.py

Each answer is streamed in tokens of about 5 characters and rendered every ``--every`` tokens
(10: every 0.2 s at 50 tokens a second, as STREAM_RENDER_INTERVAL does). The answers: the
workload's paced answer (one paragraph of 200 tokens: bench/workload.py), and each document
of docs/ as if a model wrote it (headings, lists, tables, code). Prints, for each, the
median and p99 of one update and the CPU of the whole answer, in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from parley.rendering import MarkdownStream, render_blocks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def tokens(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def timed_updates(pieces: list[str], every: int, render: Callable[[str], object]) -> list[float]:
    """Seconds of each update of an answer streamed as ``pieces``."""
    times, text = [], ""
    for index, piece in enumerate(pieces, start=1):
        text += piece
        if index % every == 0 or index == len(pieces):
            start = time.perf_counter()
            render(text)
            times.append(time.perf_counter() - start)
    return times


def incremental(pieces: list[str], every: int) -> list[float]:
    return timed_updates(pieces, every, MarkdownStream().update)


def whole(pieces: list[str], every: int) -> list[float]:
    return timed_updates(pieces, every, render_blocks)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=10, help="tokens between two updates")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each answer (best kept)")
    args = parser.parse_args()
    paced = "".join(f"q17.{i} " for i in range(200))
    answers = {"paced (workload)": paced}
    answers |= {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
    print(f"{'answer':<22} {'chars':>7} {'updates':>8}   {'incremental µs':>28}   {'whole µs':>28}")
    print(f"{'':<22} {'':>7} {'':>8}   {'median':>8} {'p99':>8} {'answer':>10}   "
          f"{'median':>8} {'p99':>8} {'answer':>10}")  # fmt: skip
    totals = {"incremental": 0.0, "whole": 0.0}
    for name, text in answers.items():
        pieces = tokens(text)
        row = [f"{name:<22} {len(text):>7,}"]
        for kind, run in (("incremental", incremental), ("whole", whole)):
            times = min((run(pieces, args.every) for _ in range(args.repeat)), key=sum)
            totals[kind] += sum(times)
            if kind == "incremental":
                row.append(f"{len(times):>8}")
            row.append(
                f"   {statistics.median(times) * 1e6:>8.0f} {p99(times) * 1e6:>8.0f} "
                f"{sum(times) * 1e6:>10,.0f}"
            )
        print(" ".join(row))
    ratio = totals["whole"] / totals["incremental"]
    print(f"all answers: {totals['incremental'] * 1e3:,.1f} ms incremental, "
          f"{totals['whole'] * 1e3:,.1f} ms whole ({ratio:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
