#!/usr/bin/env python3
"""Assistant stream latency: how long after the backend yields a piece does it reach a member?

Parley runs as ``make run`` serves it (and with Redis), with :class:`StampedBackend`: every
piece it yields carries the monotonic clock at the moment it was yielded (CLOCK_MONOTONIC is
system-wide, so the client compares it with its own). One member asks ``--answers`` questions
in turn, ``--members`` others listen (:func:`measure`); for each answer the first delta's
delay is recorded (the first delta is sent at once; later ones are coalesced by design, every
``STREAM_FLUSH_INTERVAL``).

    .venv/bin/python bench/stream.py --answers 200 --members 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from parley.backends.base import (  # noqa: E402
    AssistantBackend,
    AssistantRequest,
    BackendEvent,
    Finish,
    TextDelta,
)

STAMP = re.compile(r"~(\d+)~")


class StampedBackend(AssistantBackend):
    """Yields ``pieces`` pieces ``interval`` seconds apart, each stamped ``~<ns>~``."""

    def __init__(self, *, pieces: int = 10, interval: float = 0.005, **options: Any) -> None:
        super().__init__(**options)
        self.pieces = pieces
        self.interval = interval

    async def stream(self, request: AssistantRequest) -> AsyncIterator[BackendEvent]:
        for _ in range(self.pieces):
            await asyncio.sleep(self.interval)
            yield TextDelta(f"~{time.monotonic_ns()}~ ")
        yield Finish("stop")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def measure(target: Any, answers: int, members: int) -> list[float]:
    """The first delta's delay for each of ``answers`` answers, seen by the asker while
    ``members`` others listen. The listeners are ../shared/bench/wsload.py clients in a
    process of their own, so that reading their copies does not delay the asker's."""

    from bench.targets import SHARED

    listeners = subprocess.Popen(
        [
            sys.executable, str(SHARED / "wsload.py"), "--url", target.url(), "--quiet",
            "--origin", target.origin(), "--clients", str(members), "--senders", "0",
            "--hold", "3600", "--max-time", "3700",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # terminated at the end, it complains of open sessions
    )  # fmt: skip
    try:
        group_size = 0
        for _ in range(300):
            group_size = sum(target.status()["rooms"].values())
            if group_size >= members:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"only {group_size} of {members} listeners joined")
        # The ticket is a database row: issued here, not on the event loop.
        return asyncio.run(_ask(target, target.url(), answers))
    finally:
        listeners.terminate()
        listeners.wait()


async def _ask(target: Any, url: str, answers: int) -> list[float]:
    import websockets

    delays: list[float] = []
    run = uuid.uuid4().hex[:8]  # client ids are per author and room: new ones each run
    headers = {"Origin": target.origin()}
    async with websockets.connect(url, additional_headers=headers) as asker:
        for n in range(answers):
            question = {"type": "send", "client_id": f"{run}-{n}", "text": "go"}
            await asker.send(json.dumps(question))
            first = True
            while True:
                frame = json.loads(await asker.recv())
                if frame["type"] == "delta" and first:
                    stamp = int(STAMP.search(frame["text"]).group(1))
                    delays.append((time.monotonic_ns() - stamp) / 1e6)
                    first = False
                elif frame["type"] == "done":
                    break
    return delays


def main() -> None:
    from bench.targets import make_targets, workdir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument(
        "--members", type=int, default=100, help="listening members besides the asker"
    )
    parser.add_argument("--targets", default="parley,parley-redis")
    args = parser.parse_args()
    env = {"PARLEY_BACKEND": "bench.stream.StampedBackend"}
    targets = make_targets(args.targets.split(","), workdir(), extra_env=env)
    logdir = workdir()
    for target in targets:
        target.start(logdir)
    try:
        for target in targets:
            delays = measure(target, args.answers, args.members)
            print(
                f"{target.name:<13} first delta after the backend yields it, "
                f"{len(delays)} answers, {args.members + 1} members: "
                f"p50 {statistics.median(delays):.2f} ms  p99 {percentile(delays, 99):.2f} ms  "
                f"max {max(delays):.2f} ms",
                flush=True,
            )
    finally:
        for target in targets:
            target.stop()


if __name__ == "__main__":
    main()
