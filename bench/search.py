#!/usr/bin/env python3
"""Message search latency (issue 16, item 6): ``messages_search`` over 100,000 messages, on
SQLite (FTS5) and PostgreSQL (GIN on ``to_tsvector``), each in a fresh database.

    .venv/bin/python bench/search.py [--messages 100000] [--searches 300]
    .venv/bin/python bench/search.py --databases sqlite   # one of sqlite,postgres

Each database is filled in a process of its own (Django is set up once a process) through
``bench.targets.prepare_parley_database``: the example project's settings, a SQLite file
under /tmp or a PostgreSQL database of its own, dropped at exit. ``--rooms`` shared rooms
of 2 to 8 members among ``--users`` users, and ``--messages`` messages spread over them
unevenly (a few busy rooms, many quiet ones), alternating questions and answers of 8 to 60
words drawn from a vocabulary of 5,000 made-up words with Zipf's law (the commonest word is
in 93 % of the messages, the 20th in 17 %, most in a handful), 5 % of the rooms' last
answers regenerated (a replaced version the search must leave out), all seeded: the same
data each run.

Then ``--searches`` searches for each of two users: one a member of 25 rooms (a typical
member), one of 500 (a quarter of every message: the worst case the membership join
meets). The searches mix one common word, one rare word, two words, a quoted phrase and a
word that is nowhere; each is timed whole, as the room list's view calls it (the ranked
ids, the messages read with their rooms and authors, the snippets). p50/p95/p99 per user
and kind; the figures go to bench/results/search-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.targets import prepare_parley_database, workdir  # noqa: E402

KINDS = ("common", "rare", "two words", "phrase", "nowhere")
# Made-up words, from syllables: no dictionary on the machine needed.
SYLLABLES = [a + b for a in "kmnrstvbdfghjlpwyz" for b in "aeiou"][:25]


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))))
    return sorted(words)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def fill(args: argparse.Namespace, rng: random.Random, words: list[str]) -> dict[str, Any]:
    """The users, rooms, members and messages; the two searching users."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from tqdm import tqdm

    from parley.models import Membership, Message, Room

    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"user{n}") for n in range(args.users)
    )
    typical, heavy = get_user_model().objects.bulk_create(
        [get_user_model()(username="typical"), get_user_model()(username="heavy")]
    )
    rooms = Room.objects.bulk_create(
        Room(title=f"Room {n}", kind=Room.Kind.SHARED, owner=rng.choice(users))
        for n in range(args.rooms)
    )
    members = []
    for room in rooms:
        members += [Membership(room=room, user=u) for u in rng.sample(users, rng.randint(2, 8))]
    members += [Membership(room=room, user=typical) for room in rng.sample(rooms, 25)]
    members += [Membership(room=room, user=heavy) for room in rng.sample(rooms, 500)]
    Membership.objects.bulk_create(members, batch_size=5000)

    weights = [1 / rank for rank in range(1, len(words) + 1)]
    # Uneven rooms: a room's share of the messages drawn from a long-tailed distribution.
    shares = [rng.paretovariate(1.2) for _ in rooms]
    placed = rng.choices(range(len(rooms)), weights=shares, k=args.messages)
    last: dict[int, Message] = {}
    seqs = [0] * len(rooms)
    now = timezone.now()
    batch: list[Message] = []
    with tqdm(total=args.messages, desc="messages", unit="msg") as bar:
        for n, index in enumerate(placed):
            seqs[index] += 1
            room = rooms[index]
            text = " ".join(rng.choices(words, weights=weights, k=rng.randint(8, 60)))
            answer = seqs[index] % 2 == 0
            message = Message(
                room=room, seq=seqs[index], text=text[0].upper() + text[1:] + ".",
                role=Message.Role.ASSISTANT if answer else Message.Role.USER,
                author=None if answer else rng.choice(users), created_at=now, updated_at=now,
            )  # fmt: skip
            batch.append(message)
            if len(batch) == 2000 or n == args.messages - 1:
                Message.objects.bulk_create(batch)
                for stored in batch:
                    if stored.role == Message.Role.ASSISTANT:
                        last[stored.room_id] = stored
                bar.update(len(batch))
                batch = []
    # 5 % of the rooms' last answers regenerated: the first version is replaced.
    again = []
    for first in rng.sample(sorted(last.values(), key=lambda m: m.pk), len(last) // 20):
        seqs[rooms.index(first.room)] += 1
        again.append(
            Message(
                room=first.room,
                seq=seqs[rooms.index(first.room)],
                role=first.role,
                text=first.text + " Regenerated.",
                version_of=first,
                created_at=now,
                updated_at=now,
            )
        )
    Message.objects.bulk_create(again)
    for room, seq in zip(rooms, seqs, strict=True):
        room.last_seq = seq
    Room.objects.bulk_update(rooms, ["last_seq"], batch_size=1000)
    return {"typical": typical, "heavy": heavy}


def queries(rng: random.Random, words: list[str], count: int) -> list[tuple[str, str]]:
    """``count`` searches, as many of each kind."""
    common, rare = words[:20], words[2000:]
    made = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        if kind == "common":
            query = rng.choice(common)
        elif kind == "rare":
            query = rng.choice(rare)
        elif kind == "two words":
            query = f"{rng.choice(words[:500])} {rng.choice(words[:500])}"
        elif kind == "phrase":
            query = f'"{rng.choice(common)} {rng.choice(common)}"'
        else:
            query = "".join(rng.choices("xqz", k=8))
        made.append((kind, query))
    return made


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    url, _ = prepare_parley_database(workdir(), args.database)
    from django.db import connection

    from parley.search.selectors import messages_search

    rng = random.Random(args.seed)
    words = vocabulary(rng)
    # The vocabulary's order is its Zipf rank: shuffle it, so that rank is not alphabetical.
    rng.shuffle(words)
    started = time.perf_counter()
    searchers = fill(args, rng, words)
    filled = time.perf_counter() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # as autovacuum would have, on a database in use
    searches = queries(random.Random(args.seed + 1), words, args.searches)
    figures: dict[str, Any] = {
        "database": connection.vendor,
        "fill_seconds": round(filled, 1),
        # The machine is shared: how busy it was when the searches began.
        "load_average": os.getloadavg()[0],
    }
    for name, user in searchers.items():
        for _, query in searches[:20]:  # warm: the pages the index needs in memory
            messages_search(user=user, query=query)
        timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
        hits: dict[str, list[int]] = {kind: [] for kind in KINDS}
        for kind, query in searches:
            begun = time.perf_counter()
            results = messages_search(user=user, query=query)
            timings[kind].append((time.perf_counter() - begun) * 1000)
            hits[kind].append(len(results.hits))
        every = [t for kind in KINDS for t in timings[kind]]
        figures[name] = {
            "all": summary(every),
            **{
                kind: {**summary(timings[kind]), "hits_mean": statistics.mean(hits[kind])}
                for kind in KINDS
            },
        }
    return figures


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 2),
        "p95_ms": round(percentile(values, 95), 2),
        "p99_ms": round(percentile(values, 99), 2),
    }


def report(results: list[dict[str, Any]]) -> None:
    for figures in results:
        print(
            f"\n{figures['database']} (filled in {figures['fill_seconds']} s;"
            f" load average {figures['load_average']:.1f} as the searches began)"
        )
        print(f"{'user':8} {'searches':12} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'hits':>5}")
        for name in ("typical", "heavy"):
            for kind in ("all", *KINDS):
                row = figures[name][kind]
                mean = f"{row['hits_mean']:5.1f}" if "hits_mean" in row else ""
                print(
                    f"{name:8} {kind:12} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f}"
                    f" {row['p99_ms']:8.2f} {mean:>5}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rooms", type=int, default=2000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--database", help=argparse.SUPPRESS)  # one, in a child process
    args = parser.parse_args()
    if args.database:
        print(json.dumps(run_one(args)))
        return
    results = []
    for database in args.databases.split(","):
        child = [sys.executable, __file__, *sys.argv[1:], "--database", database]
        done = subprocess.run(child, stdout=subprocess.PIPE, text=True, check=True, env=os.environ)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report(results)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    out = ROOT / "bench" / "results" / f"search-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    print(f"\n{out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
