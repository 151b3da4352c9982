"""parley.realtime.posting: posts that arrive together are stored together, through a real
server and real sockets."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from parley.models import Message
from parley.rooms import services
from tests.servers import Peer, scripted_backend

pytestmark = pytest.mark.django_db(transaction=True)

# The tests' servers read their PARLEY options from PARLEY_TEST_OPTIONS (tests/settings.py).
NO_LIMITS = json.dumps({"RATE_LIMITS": {"USER": None, "CONNECTION": None}})


@pytest.fixture
def crowd(make_user, alice, shared_room):
    """Alice and nine more members of her shared room."""
    users = [alice, *(make_user(f"member{n}") for n in range(9))]
    for user in users[1:]:
        services.room_member_add(room=shared_room, user=user, by=alice)
    return users


async def test_posts_sent_at_once_are_each_stored_once_and_acked_with_their_own_row(
    servers, crowd, shared_room
):
    server = servers({"PARLEY_TEST_OPTIONS": NO_LIMITS})
    peers = [await Peer.connect(server, shared_room, user) for user in crowd]
    first = peers[0]
    await first.send(type="send", client_id="early", text="before the burst", ask=False)
    await first.expect(lambda f: f["type"] == "ack")

    # Every member sends five messages without waiting, and the first resends one of its own.
    sends = [
        peer.send(type="send", client_id=f"c{n}", text=f"{index}:{n}", ask=False)
        for index, peer in enumerate(peers)
        for n in range(5)
    ]
    await asyncio.gather(*sends, first.send(type="send", client_id="early", text="again"))

    for index, peer in enumerate(peers):
        acks = [
            await peer.expect(lambda f, n=n: f["type"] == "ack" and f["client_id"] == f"c{n}")
            for n in range(5)
        ]
        assert [a["message"]["text"] for a in acks] == [f"{index}:{n}" for n in range(5)]
        assert not any(a["duplicate"] for a in acks)
    resent = await first.expect(lambda f: f["type"] == "ack" and f["client_id"] == "early")
    assert resent["duplicate"] and resent["message"]["text"] == "before the burst"

    @database_sync_to_async
    def stored() -> list[tuple[int, str]]:
        return list(
            Message.objects.filter(room=shared_room).order_by("seq").values_list("seq", "text")
        )

    rows = await stored()
    assert [seq for seq, _ in rows] == list(range(1, 52))  # 1 + 50: no gap, no duplicate
    assert sorted(text for _, text in rows[1:]) == sorted(
        f"{i}:{n}" for i in range(len(peers)) for n in range(5)
    )
    # Every member is told of every new message, in the order of their numbers.
    for peer in peers:
        told = [
            await peer.expect(lambda f: f["type"] == "message" and f["message"]["seq"] > 1)
            for _ in range(50)
        ]
        assert [f["message"]["seq"] for f in told] == list(range(2, 52))
    for peer in peers:
        await peer.close()


async def test_the_room_hears_of_posts_and_answers_in_the_order_of_their_numbers(
    servers, crowd, shared_room
):
    """Posts stored together and answers opened just after them take consecutive numbers in
    the same room: every member must hear of them in that order, without a gap (a client
    that sees 563 before 562 resumes for nothing, or shows them out of order)."""
    server = servers({"PARLEY_TEST_OPTIONS": NO_LIMITS, **scripted_backend(repeat=2, delay=0)})
    peers = [await Peer.connect(server, shared_room, user) for user in crowd[:6]]

    async def chat(index: int, peer: Peer) -> None:
        for n in range(40):
            # Every member asks now and then: most wait in the room's queue (past five, they
            # are stored unanswered), some open an answer right after a batch of others' posts.
            await peer.send(type="send", client_id=f"{index}-{n}", text="hi", ask=n % 3 == 0)
            await asyncio.sleep(0.002)

    await asyncio.gather(*(chat(index, peer) for index, peer in enumerate(peers)))
    for peer in peers:
        for n in range(40):
            await peer.expect(
                lambda f, n=n: f["type"] == "ack" and f["client_id"].endswith(f"-{n}")
            )
    await asyncio.sleep(0.5)  # the last answers' announcements arrive
    for peer in peers:
        # A question's later frames (it waits, it is answered) repeat its number: the first
        # of each is the news of a new message.
        seqs = list(
            dict.fromkeys(f["message"]["seq"] for f in peer.frames if f["type"] == "message")
        )
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "out of order, or a gap"
        assert not [f for f in peer.frames if f["type"] == "sync"]
    for peer in peers:
        await peer.close()
