"""What a user may not read must not show in how fast they are answered, and rebuilding the
knowledge index must not stall other sockets.

    .venv/bin/python bench/access.py [--rounds 30] [--hidden 200] [--rule owner|callable]

Sets Django up on a temporary SQLite database with the example project's settings and the
offline backend, indexes the shipped knowledge base padded to 1,000 documents (about 5,400
passages, as bench/retrieval.py does) and a public travel page about the ferry, then drives
Parley's real ASGI application in process (WebSocket clients through the routing, the
session middleware and the consumer):

1. Bob asks about the ferry ``--rounds`` times in his private room: the delay from his
   ``send`` to the answer's first delta, and the queries of one search, with none and then
   with ``--hidden`` notes about the ferry that only Alice may read (``--rule owner``:
   ``register(owner="author")``; ``--rule callable``: a callable permission doing the same).
   The figures should be level.
2. The index is made stale, Alice asks in her room (her answer's search rebuilds the index)
   while Bob's socket in another room posts a message every 5 ms: the delay of each ``ack``
   during the rebuild, against the same without a rebuild.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.retrieval import filler_document, index, setup_django  # noqa: E402

QUESTION = "When does the ferry leave the pier?"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    slow = sum(value > 50 for value in values)
    return (
        f"p50 {statistics.median(values):6.2f} ms  p90 {percentile(values, 0.9):6.2f} ms  "
        f"max {max(values):6.2f} ms  ({len(values)}, {slow} over 50 ms)"
    )


def register_vault(rule: str) -> None:
    """Alice's vault notes as knowledge only she may read."""
    from parley import knowledge
    from parley.models import Message

    access = (
        {"owner": "author"}
        if rule == "owner"
        else {"permission": lambda user, m: m.author_id == user.pk}
    )
    knowledge.register(
        Message,
        fields=["text"],
        title=lambda m: f"Vault note {m.seq}",
        queryset=Message.objects.filter(room__title="Vault", role="user"),
        **access,
    )


async def connect(room, user):
    from example.asgi import application
    from parley.testing import RoomClient

    client = await RoomClient.connect(application, room, user)
    await client.expect("hello")
    return client


async def first_delta(client, text: str) -> float:
    """Milliseconds from sending ``text`` to its answer's first delta (then waits for the
    answer to end)."""
    client.frames.clear()  # frames of earlier answers
    started = time.perf_counter()
    await client.send(type="send", text=text)
    await client.expect("delta", timeout=30)
    delay = (time.perf_counter() - started) * 1000
    await client.expect("done", timeout=30)
    return delay


def search_queries(user) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from parley.knowledge.index import passages_search

    connection.queries_log.clear()  # a full log (DEBUG) would count nothing
    with CaptureQueriesContext(connection) as queries:
        passages_search(query=QUESTION, user=user)
    return len(queries)


async def acks_while(client, until: asyncio.Future | None, count: int) -> list[float]:
    """Post ``count`` messages 5 ms apart (or until ``until`` is done); each ack's delay."""
    delays = []
    for n in range(count):
        if until is not None and until.done():
            break
        client.frames.clear()
        started = time.perf_counter()
        await client.send(type="send", text=f"note {n}", ask=False)
        await client.expect("ack", timeout=30)
        delays.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.005)
    return delays


async def run(args: argparse.Namespace) -> None:
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from parley import answers
    from parley.knowledge.index import index_current
    from parley.knowledge.store import version_bump
    from parley.rooms import services

    users = get_user_model().objects
    alice = await sync_to_async(users.create_user)("alice", password="x")
    bob = await sync_to_async(users.create_user)("bob", password="x")
    vault = await sync_to_async(services.room_create)(owner=alice, title="Vault")
    alice_room = await sync_to_async(services.room_create)(owner=alice, title="Alice")
    bob_room = await sync_to_async(services.room_create)(owner=bob, title="Bob")
    bob_other = await sync_to_async(services.room_create)(owner=bob, title="Bob's other room")
    await sync_to_async(index_current)()
    asker = await connect(bob_room, bob)

    for label in ("no hidden notes", f"{args.hidden} hidden notes"):
        if label != "no hidden notes":
            for n in range(args.hidden):  # indexed by the save signal, owned by Alice
                await sync_to_async(services.message_post)(
                    room=vault, author=alice, text=f"The ferry leaves pier {n} at {n % 12}."
                )
            await sync_to_async(index_current)()
        await first_delta(asker, QUESTION)  # warm
        delays = [await first_delta(asker, QUESTION) for _ in range(args.rounds)]
        queries = await sync_to_async(search_queries)(await sync_to_async(users.get)(pk=bob.pk))
        print(f"  first delta, {label:<18} {summary(delays)}   queries/search {queries}")

    poster = await connect(bob_other, bob)  # posts in a room of its own
    alice_room_peer = await connect(alice_room, alice)
    baseline = await acks_while(poster, None, 100)
    print(f"  ack, no rebuild                  {summary(baseline)}")
    stalls = []
    for _ in range(5):
        await sync_to_async(version_bump)()  # stale: the next search rebuilds
        answer = asyncio.ensure_future(first_delta(alice_room_peer, QUESTION))
        stalls += await acks_while(poster, answer, 10_000)
        await answer
    print(f"  ack, during 5 index rebuilds     {summary(stalls)}")
    await answers.answers_shutdown()
    for client in (asker, poster, alice_room_peer):
        await client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--rule", choices=["owner", "callable"], default="owner")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        workdir = Path(tmp)
        os.environ["PARLEY_BACKEND"] = "offline"
        setup_django(workdir)
        import logging

        logging.disable(logging.INFO)  # a line per answer otherwise
        from django.conf import settings
        from django.test import override_settings

        offline = {"BACKEND": "parley.backends.offline.OfflineBackend", "OPTIONS": {"delay": 0}}
        unlimited = {"CONNECTION": None, "USER": None}
        parley = {**settings.PARLEY, "BACKENDS": {"default": offline}, "RATE_LIMITS": unlimited}
        override = override_settings(PARLEY=parley)
        override.enable()
        extra = workdir / "extra"
        extra.mkdir()
        (extra / "travel.md").write_text("# Travel\n\nThe ferry leaves the pier at nine.\n")
        rng = random.Random(3)
        for number in range(args.documents):
            (extra / f"page-{number:04d}.md").write_text(filler_document(number, rng))
        register_vault(args.rule)
        print(index([ROOT / "docs", ROOT / "README.md", extra]))
        print(f"rule {args.rule}, {args.rounds} rounds")
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
