#!/usr/bin/env python3
"""History pullers against a quiet member: can four sockets pulling history in a loop slow
everyone else down?

Parley runs as ``make run`` serves it, with its default limits, in a room of ``--messages``
messages of 8,000 emoji (32 kB of UTF-8 each). A quiet member posts a short message every
0.25 s and times each ``ack``: first alone, then while ``--pullers`` other members (each a
user of their own, in a process of their own so that parsing their pages does not delay the
quiet member's client) ask for the whole history again and again, reading every page, and
waiting ``retry_after`` when told ``rate_limited``. Prints the ack p50/p99 of both phases, what
the pullers got, and the server's RSS.

    .venv/bin/python bench/history.py --seconds 20
    .venv/bin/python bench/history.py --resume-limit off   # what RATE_LIMITS["RESUME"] buys

(Issue 9 measured 1.7 → 120 ms for the quiet member's ack p50 before history was paged by
bytes and resumes were limited.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets  # noqa: E402

from bench.targets import make_targets, workdir  # noqa: E402

MiB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


async def quiet(url: str, origin: str, seconds: float) -> list[float]:
    """Ack latencies (ms) of a message posted every 0.25 s for ``seconds``."""
    latencies = []
    async with websockets.connect(url, origin=origin, max_size=None) as ws:
        await ws.recv()  # hello
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            client_id = f"q{time.monotonic_ns()}"
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "send", "client_id": client_id, "text": f"hi {n}"}))
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "ack" and frame["client_id"] == client_id:
                    break
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.25)
    return latencies


async def pull(url: str, origin: str, seconds: float) -> dict[str, float]:
    """Ask for the whole history again and again for ``seconds``; pages, bytes, refusals."""
    got = {"pages": 0, "bytes": 0, "refused": 0, "rounds": 0}
    async with websockets.connect(url, origin=origin, max_size=None) as ws:
        await ws.recv()
        deadline = time.monotonic() + seconds
        after = 0
        await ws.send(json.dumps({"type": "resume", "after": after}))
        while time.monotonic() < deadline:
            text = await ws.recv()
            frame = json.loads(text)
            if frame["type"] == "history":
                got["pages"] += 1
                got["bytes"] += len(text.encode())
                after = frame["last_seq"] if frame["more"] else 0
                got["rounds"] += not frame["more"]
            elif frame["type"] == "error" and frame["code"] == "rate_limited":
                got["refused"] += 1
                await asyncio.sleep(frame["retry_after"])
            else:
                continue
            await ws.send(json.dumps({"type": "resume", "after": after}))
    return got


def pull_all(urls: list[str], origin: str, seconds: float, results: Any) -> None:
    async def run() -> list[dict[str, float]]:
        return await asyncio.gather(*(pull(url, origin, seconds) for url in urls))

    results.put(asyncio.run(run()))


class PeakRSS:
    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def seed(django_state: Any, pullers: int, messages: int) -> list[Any]:
    """The room's history and the pullers' users (members of the room)."""
    from django.contrib.auth import get_user_model

    from parley.rooms import services

    owner, room = django_state
    users = []
    for n in range(pullers):
        user = get_user_model().objects.create_user(f"puller{n}", password="x")
        services.room_member_add(room=room, by=owner, user=user)
        users.append(user)
    for _ in range(messages):
        services.message_post(room=room, author=owner, text="😀" * 8000)
    return users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--pullers", type=int, default=4)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--resume-limit", choices=["default", "off"], default="default")
    args = parser.parse_args()

    limits = {} if args.resume_limit == "default" else {"RESUME": None}
    (target,) = make_targets(
        ["parley"], workdir(), extra_env={"PARLEY_RATE_LIMITS": json.dumps(limits)}
    )
    users = seed(target.django, args.pullers, args.messages)
    logdir = workdir()
    target.start(logdir)
    try:
        import psutil

        origin = target.origin()
        owner, room = target.django
        server = psutil.Process(target.proc.pid)
        rss_start = server.memory_info().rss
        alone = asyncio.run(quiet(target.url(), origin, args.seconds))

        urls = [target.room_url(user, room.public_id) for user in users]
        results: Any = multiprocessing.Queue()
        pullers = multiprocessing.Process(
            target=pull_all, args=(urls, origin, args.seconds + 4, results)
        )
        peak = PeakRSS(target.proc.pid)
        pullers.start()
        time.sleep(2)  # the pullers are pulling
        loaded = asyncio.run(quiet(target.url(), origin, args.seconds))
        pulled = results.get(timeout=60)
        pullers.join()
        rss_peak = peak.stop()
        rss_end = server.memory_info().rss
    finally:
        target.stop()

    print(f"room: {args.messages} messages of 8,000 emoji; resume limit: {args.resume_limit}")
    for label, values in (("alone", alone), (f"with {args.pullers} pullers", loaded)):
        print(
            f"quiet member's ack, {label}: p50 {statistics.median(values):.1f} ms, "
            f"p99 {percentile(values, 99):.1f} ms ({len(values)} acks)"
        )
    print(
        f"ack p50 ratio: {statistics.median(loaded) / statistics.median(alone):.1f}x "
        "(issue 9: 70x before)"
    )
    seconds = args.seconds + 4
    pages = sum(p["pages"] for p in pulled)
    rate = sum(p["bytes"] for p in pulled) / seconds / MiB
    print(
        f"pullers: {pages / seconds:.1f} pages/s, {rate:.2f} MiB/s, "
        f"{sum(p['rounds'] for p in pulled)} whole histories, "
        f"{sum(p['refused'] for p in pulled)} resumes refused (rate_limited)"
    )
    print(
        f"server RSS: {rss_start / MiB:.0f} MiB before, at most {rss_peak / MiB:.0f} MiB "
        f"while pulled, {rss_end / MiB:.0f} MiB after"
    )


if __name__ == "__main__":
    main()
