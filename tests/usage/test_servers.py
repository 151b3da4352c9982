"""Quotas hold across server processes: two uvicorn processes on one database, asked at
once for more answers than the asker's quota allows."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from parley.models import Quota, QuotaTally, Usage
from parley.rooms import services
from parley.usage.quotas import IN_FORCE_TTL
from tests.servers import Peer

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def rooms_of(user, count: int) -> list:
    return [
        services.room_create(owner=user, title=f"Room {n}", kind="private") for n in range(count)
    ]


@database_sync_to_async
def recorded(quota: Quota) -> tuple[int, int, int]:
    tally = QuotaTally.objects.get(quota=quota)
    used = sum(row.total_tokens for row in Usage.objects.all())
    return tally.answers, tally.tokens, used


async def outcome(peer: Peer, client_id: str) -> str:
    """``"answered"`` or the code of the error that refused the question."""
    frame = await peer.expect(
        lambda f: f["type"] == "done" or (f["type"] == "error" and f.get("client_id") == client_id)
    )
    return "answered" if frame["type"] == "done" else frame["code"]


async def test_two_processes_asked_at_once_give_no_more_than_the_quota(servers, alice):
    quota = await Quota.objects.acreate(user=alice, period=Quota.Period.DAY, max_answers=4)
    backend = {
        "BACKEND": "parley.backends.scripted.ScriptedBackend",
        "OPTIONS": {"reply": "word ", "repeat": 20, "delay": 0.01, "usage": (30, 20)},
    }
    env = {"PARLEY_TEST_BACKEND": json.dumps(backend)}
    first, second = servers(env, name="first"), servers(env, name="second")
    rooms = await rooms_of(alice, 10)
    peers = [
        await Peer.connect(first if n % 2 else second, room, alice) for n, room in enumerate(rooms)
    ]
    # Ten questions, five on each process, sent at once: four may be answered.
    await asyncio.gather(
        *(peer.send(type="send", client_id=f"q{n}", text="go") for n, peer in enumerate(peers))
    )
    outcomes = await asyncio.gather(*(outcome(peer, f"q{n}") for n, peer in enumerate(peers)))
    assert sorted(outcomes) == ["answered"] * 4 + ["quota_exceeded"] * 6
    # Each answer's tokens, recorded by whichever process ran it, are in the one tally.
    assert await recorded(quota) == (4, 4 * 50, 4 * 50)
    for peer in peers:
        await peer.close()


async def test_a_quota_set_while_the_servers_run_applies_within_seconds(servers, alice):
    backend = {"BACKEND": "parley.backends.scripted.ScriptedBackend", "OPTIONS": {}}
    server = servers({"PARLEY_TEST_BACKEND": json.dumps(backend)})
    [room] = await rooms_of(alice, 1)
    peer = await Peer.connect(server, room, alice)
    await peer.send(type="send", client_id="before", text="go")
    assert await outcome(peer, "before") == "answered"  # no quota: no question counted
    await Quota.objects.acreate(user=alice, max_answers=1)  # as the admin makes it
    await asyncio.sleep(IN_FORCE_TTL + 0.5)  # what the server read of quotas grows old
    results = []
    for client_id in ("first", "second"):
        await peer.send(type="send", client_id=client_id, text="go")
        results.append(await outcome(peer, client_id))
    assert results == ["answered", "quota_exceeded"]
    await peer.close()
