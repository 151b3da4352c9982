#!/usr/bin/env python3
"""A retention run on a database of realistic size: how fast it deletes, how long each of its
transactions lasts, and what it does to a member posting meanwhile.

Builds ``--rooms`` private rooms of ``--messages`` messages each (questions and answers,
half of them 100 days old, half a day old) on SQLite (a temporary file) or PostgreSQL (a
database of its own). Then, for each ``--batch-sizes``, a member posts a message every
20 ms in a room of their own, from a process of its own (as a server would), timed: first
idle, then while the old half of the rooms' messages is pruned with
``RETENTION["PRIVATE"] = 30`` (the calls ``parley_retention`` makes, a batch at a time so
that each transaction is timed); the database is filled again between runs. Prints messages
deleted per second, transaction p50/max, and the poster's p50/p99/max.

    .venv/bin/python bench/retention.py
    .venv/bin/python bench/retention.py --database postgres --rooms 200 --messages 400
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.targets import prepare_parley_database, workdir  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


# Parley and Django are imported in the functions: prepare_parley_database sets Django up.


def fill(user: Any, rooms: int, messages: int) -> list[int]:
    """The rooms, made 101 days ago; returns their pks."""
    from django.utils import timezone

    from parley.models import Membership, Message, Room

    now = timezone.now()
    made = Room.objects.bulk_create(Room(owner=user, title=f"r{i}") for i in range(rooms))
    Membership.objects.bulk_create(Membership(room=room, user=user) for room in made)
    Room.objects.filter(pk__in=[r.pk for r in made]).update(created_at=now - timedelta(days=101))
    for room in made:
        questions = Message.objects.bulk_create(
            Message(room=room, seq=seq, role="user", author=user, text="q " * 40)
            for seq in range(1, messages + 1, 2)
        )
        Message.objects.bulk_create(
            Message(room=room, seq=q.seq + 1, role="assistant", reply_to=q, text="a " * 200)
            for q in questions
        )
        old = Message.objects.filter(room=room, seq__lte=messages // 2)
        old.update(created_at=now - timedelta(days=100))
        Room.objects.filter(pk=room.pk).update(last_seq=messages)
    return [room.pk for room in made]


def poster(user_pk: int, room_pk: int, stop: Any, results: Any) -> None:
    """In a process of its own (as a server would be): post every 20 ms until ``stop``."""
    from parley.models import Room
    from parley.rooms import services

    room = Room.objects.get(pk=room_pk)
    author = room.owner
    assert author is not None and author.pk == user_pk
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        services.message_post(room=room, author=author, text="still here")
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.02)
    results.send(latencies)


def posting(user: Any, room: Any, work: Any) -> tuple[list[float], Any]:
    """``work()`` while ``user`` posts in ``room`` from another process: the post latencies
    (ms), and what ``work`` returned."""
    from django.db import connections

    connections.close_all()  # not shared with the forked poster
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=poster, args=(user.pk, room.pk, stop, sending))
    process.start()
    time.sleep(0.5)  # set up and posting
    try:
        result = work()
    finally:
        stop.set()
        latencies = receiving.recv()
        process.join()
    return latencies, result


def prune(rooms: list[int], batch_size: int, pause: float) -> tuple[int, list[float]]:
    """Prune every room a batch at a time, ``pause`` seconds after each, as
    :func:`room_prune` pauses: messages deleted, each transaction's ms."""
    from django.utils import timezone

    from parley.retention.services import RoomPlan, room_prune, room_prune_plan

    cutoff = timezone.now() - timedelta(days=30)
    deleted, durations = 0, []
    for room_id in rooms:
        plan = room_prune_plan(room_id=room_id, cutoff=cutoff, batch_size=batch_size)
        for batch in plan.batches:
            started = time.perf_counter()
            count, _ = room_prune(plan=RoomPlan(room_id=room_id, batches=[batch]), cutoff=cutoff)
            durations.append((time.perf_counter() - started) * 1000)
            deleted += count
            time.sleep(pause)
    return deleted, durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rooms", type=int, default=300)
    parser.add_argument("--messages", type=int, default=200, help="per room (even)")
    parser.add_argument("--batch-sizes", default="100,500,2000")
    parser.add_argument("--pauses", default="0,0.05", help="seconds between transactions")
    args = parser.parse_args()
    _, (user, quiet_room) = prepare_parley_database(workdir(), args.database)
    from parley.models import Message, Room

    print(f"{args.database}: {args.rooms} rooms x {args.messages} messages, half past 30 days")
    idle, _ = posting(user, quiet_room, lambda: time.sleep(3))
    print(f"idle poster: p50 {percentile(idle, 50):.1f} ms, p99 {percentile(idle, 99):.1f} ms")
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    for pause, size in ((float(p), s) for p in args.pauses.split(",") for s in sizes):
        Room.objects.exclude(pk=quiet_room.pk).delete()
        rooms = fill(user, args.rooms, args.messages)
        started = time.perf_counter()
        latencies, (deleted, durations) = posting(
            user, quiet_room, lambda rooms=rooms, size=size, pause=pause: prune(rooms, size, pause)
        )
        elapsed = time.perf_counter() - started
        assert deleted == args.rooms * args.messages // 2, deleted
        assert Message.objects.exclude(room=quiet_room).count() == deleted
        print(
            f"batch {size:>5}, pause {pause:g} s: {deleted} deleted in {elapsed:.1f} s "
            f"({deleted / elapsed:,.0f}/s), {len(durations)} transactions "
            f"p50 {statistics.median(durations):.1f} ms max {max(durations):.1f} ms; "
            f"poster p50 {percentile(latencies, 50):.1f} ms p99 "
            f"{percentile(latencies, 99):.1f} ms max {max(latencies):.1f} ms"
        )


if __name__ == "__main__":
    main()
