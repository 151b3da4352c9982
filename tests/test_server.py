"""A real uvicorn server (subprocess) driven by real WebSocket clients, on the in-memory
layer and on Redis, including two servers sharing rooms through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from parley.models import Message
from parley.testing import AnswerText
from tests.servers import Peer, Server, StalledReader, scripted_backend, server_status

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["memory", "redis"])
def layer_env(request) -> dict[str, str]:
    if request.param == "redis":
        return request.getfixturevalue("redis_env")
    return {}


async def follow_answer(
    peer: Peer, text: str = "", cancel_after: int | None = None, message_id: int | None = None
) -> tuple[str, dict]:
    """Apply deltas until the answer (``message_id``, or the first one heard of) is done,
    sending a cancel after ``cancel_after`` deltas; returns the client's copy of the text and
    the final message."""
    copy = AnswerText(text)
    deltas = 0

    def of_the_answer(f: dict) -> bool:
        if f["type"] == "delta":
            return message_id in (None, f["message_id"])
        return f["type"] == "done" and message_id in (None, f["message"]["id"])

    while True:
        frame = await peer.expect(of_the_answer)
        if frame["type"] == "done":
            return copy.text, frame["message"]
        copy.apply(frame["offset"], frame["text"])
        deltas += 1
        if deltas == cancel_after:
            await peer.send(type="cancel")


async def members(server, room, *users) -> list[Peer]:
    """One connected peer per user, in order."""
    return [await Peer.connect(server, room, user) for user in users]


async def test_members_see_each_other_and_the_streamed_answer(
    servers, layer_env, alice, bob, shared_room
):
    server = servers({**layer_env, **scripted_backend(repeat=20, delay=0.005)})
    a, b = await members(server, shared_room, alice, bob)
    await a.send(type="send", client_id="q1", text="hello from alice")
    ack = await a.expect(lambda f: f["type"] == "ack")
    seen = await b.expect(lambda f: f["type"] == "message" and f["message"]["role"] == "user")
    assert seen["message"]["id"] == ack["message"]["id"]
    for p in (a, b):
        text, final = await follow_answer(p)
        assert final["status"] == "complete"
        assert text == final["text"] == "tok " * 20
    await a.close()
    await b.close()


@pytest.mark.parametrize("deflate", ["false", "true"])
async def test_frames_arrive_intact_framed_once_or_compressed_per_member(
    servers, deflate, alice, bob, shared_room
):
    """Room frames are framed once for every member (parley.uvicorn), or, where a client
    negotiated permessage-deflate, compressed for each: either way every member reads the
    same text, short or long (the 7-, 16- and 64-bit length forms of a frame)."""
    server = servers(args=("--ws-per-message-deflate", deflate))
    a, b = await members(server, shared_room, alice, bob)
    assert (a.ws.protocol.extensions != []) is (deflate == "true")
    texts = ["hé 👋", "y" * 300, *(f"{n} " + "z" * 7990 for n in range(9))]
    for n, text in enumerate(texts):
        await a.send(type="send", client_id=f"m{n}", text=text, ask=False)
    for peer in (a, b):
        live = [(await peer.expect(is_message))["message"]["text"] for _ in texts]
        assert live == texts
        await peer.send(type="resume", after=0)
        history = await peer.expect(lambda f: f["type"] == "history")  # over 64 KiB
        assert [m["text"] for m in history["messages"]] == texts
    await a.close()
    await b.close()


def is_message(frame: dict) -> bool:
    return frame["type"] == "message"


async def test_reconnect_resumes_without_loss(servers, layer_env, alice, bob, shared_room):
    server = servers({**layer_env, **scripted_backend(repeat=2000, delay=0.01)})
    a, b = await members(server, shared_room, alice, bob)
    await a.send(type="send", client_id="q1", text="long answer please")
    ack = await a.expect(lambda f: f["type"] == "ack")
    await a.expect(lambda f: f["type"] == "delta")
    seen = [f["message"] for f in a.frames if f["type"] in {"ack", "message"}]
    # A client resumes from just before the oldest message it still holds as streaming,
    # so that it learns how that message went on.
    open_seqs = [m["seq"] for m in seen if m["status"] == "streaming"]
    resume_after = min(open_seqs) - 1 if open_seqs else max(m["seq"] for m in seen)
    assert resume_after == ack["message"]["seq"]
    a.drop()
    # While alice is away: bob talks, and the answer keeps streaming.
    for n in range(3):
        await b.send(type="send", client_id=f"b{n}", text=f"bob {n}", ask=False)
        await b.expect(lambda f, n=n: f["type"] == "ack" and f["client_id"] == f"b{n}")
    await asyncio.sleep(0.3)
    back = await Peer.connect(server, shared_room, alice)
    await back.send(type="resume", after=resume_after)
    history = await back.expect(lambda f: f["type"] == "history")
    texts = [m["text"] for m in history["messages"] if m["role"] == "user"]
    assert texts == ["bob 0", "bob 1", "bob 2"]
    (answer,) = [m for m in history["messages"] if m["role"] == "assistant"]
    assert answer["status"] == "streaming"  # 2,000 pieces 10 ms apart: still going
    text, final = await follow_answer(back, answer["text"], cancel_after=5)
    assert final["status"] == "cancelled"
    assert len(text) > len("tok ") * 5
    assert text == final["text"]
    assert ack["message"]["seq"] < final["seq"]
    await back.close()
    await b.close()


async def test_two_servers_share_rooms_streams_and_stop(
    servers, redis_env, alice, bob, shared_room
):
    env = {**redis_env, **scripted_backend(repeat=2000, delay=0.01)}
    server_a, server_b = servers(env, name="server-a"), servers(env, name="server-b")
    on_a, on_b = (
        await Peer.connect(server_a, shared_room, alice),
        await Peer.connect(server_b, shared_room, bob),
    )
    # A message posted on B reaches a member on A.
    await on_b.send(type="send", client_id="b1", text="hi from B", ask=False)
    got = await on_a.expect(
        lambda f: f["type"] == "message" and f["message"]["text"] == "hi from B"
    )
    assert got["message"]["author"]["name"] == "bob"
    # A question asked on A: the answer runs on A and streams live to the member on B.
    await on_a.send(type="send", client_id="a1", text="question on A")
    started = await on_b.answer_started()
    for _ in range(3):
        await on_b.expect(lambda f: f["type"] == "delta")
    # Stop sent to B stops the generation running on A.
    await on_b.send(type="cancel")
    for p in (on_a, on_b):
        done = await p.expect(lambda f: f["type"] == "done")
        assert done["message"]["id"] == started["id"]
        assert done["message"]["status"] == "cancelled"
        assert len(done["message"]["text"]) < len("tok ") * 2000
    # And the other way round: asked on B, streamed live to A, stopped from A.
    await on_b.send(type="send", client_id="b2", text="question on B")
    second = await on_a.answer_started(not_id=started["id"])
    text = ""
    for _ in range(3):
        delta = await on_a.expect(
            lambda f: f["type"] == "delta" and f["message_id"] == second["id"]
        )
        assert delta["offset"] == len(text)
        text += delta["text"]
    await on_a.send(type="cancel")
    done = await on_b.expect(lambda f: f["type"] == "done" and f["message"]["id"] == second["id"])
    assert done["message"]["status"] == "cancelled"
    assert done["message"]["text"].startswith(text)
    await on_a.close()
    await on_b.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_answer_of_a_dead_server_ends_interrupted(
    servers, redis_env, alice, bob, shared_room, sig
):
    options = {
        "PARLEY_TEST_OPTIONS": json.dumps(
            {"STREAM_PERSIST_INTERVAL": 0.2, "ANSWER_STALE_AFTER": 1.0}
        )
    }
    reply = "tok " * 300  # 3 s of streaming
    env = {**redis_env, **scripted_backend(repeat=300, delay=0.01), **options}
    doomed, survivor = servers(env, name="doomed"), servers(env, name="survivor")
    on_doomed = await Peer.connect(doomed, shared_room, alice)
    on_survivor = await Peer.connect(survivor, shared_room, bob)
    await on_doomed.send(type="send", client_id="q1", text="long one")
    started = await on_survivor.answer_started()
    await on_survivor.expect(lambda f: f["type"] == "delta")
    doomed.stop(sig)
    if sig == signal.SIGKILL:
        # Nobody was left to close the answer: the database still has it streaming, and
        # only its heartbeat, gone quiet, tells that its process died.
        assert (await stored(started["id"])).status == Message.Status.STREAMING

    # The member on the other process is told, with the stored text, without anyone acting:
    # the surviving process checks for answers whose heartbeat stopped.
    done = await on_survivor.expect(lambda f: f["type"] == "done")
    row = await stored(started["id"])
    assert done["message"]["id"] == started["id"]
    assert done["message"]["status"] == row.status == Message.Status.INTERRUPTED
    assert done["message"]["text"] == row.text and reply.startswith(row.text)
    assert row.error

    # The server comes back (a supervisor restarts it); its member reconnects and resumes
    # from before the answer, as a client holding a streaming message does.
    restarted = servers(env, name="restarted")
    back = await Peer.connect(restarted, shared_room, alice)
    await back.send(type="resume", after=started["seq"] - 1)
    history = await back.expect(lambda f: f["type"] == "history")
    (answer,) = [m for m in history["messages"] if m["id"] == started["id"]]
    assert (answer["status"], answer["text"]) == ("interrupted", row.text)

    # The room is usable again: asked again on the surviving server, a new answer completes
    # and both members, one on each process, get all of it.
    await on_survivor.send(type="send", client_id="q2", text="once more")
    retry = await on_survivor.answer_started(not_id=started["id"])
    for peer in (on_survivor, back):
        text, final = await follow_answer(peer, message_id=retry["id"])
        assert final["status"] == "complete"
        assert text == final["text"] == reply
    assert (await stored(retry["id"])).status == Message.Status.COMPLETE
    await on_survivor.close()
    await back.close()


@database_sync_to_async
def stored(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


async def test_the_process_reaches_the_layer_at_startup_before_any_socket(servers, redis_env):
    """The hub subscribes to its Redis channel while the server starts (ASGI lifespan), so
    the first socket does not wait for that, and a layer problem shows in the log at once."""
    import redis.asyncio as aioredis

    servers(redis_env)
    client = aioredis.from_url(redis_env["REDIS_URL"])
    try:
        hubs = await client.pubsub_channels(f"{redis_env['PARLEY_LAYER_PREFIX']}parley.hub.*")
    finally:
        await client.aclose()
    assert len(hubs) == 1


async def test_a_server_starting_without_its_layer_serves_once_the_layer_is_there(
    servers, redis_server, alice, shared_room
):
    """Redis down at startup: the server starts anyway and says so; sockets that join once
    Redis is back get the room."""
    redis_server.stop()
    env = {
        "REDIS_URL": redis_server.url,
        "PARLEY_LAYER_PREFIX": f"parley-test-{uuid.uuid4().hex[:10]}",
    }
    server = servers(env)
    assert "The channel layer cannot be reached" in server.log()
    redis_server.start()
    a, b = await members(server, shared_room, alice, alice)
    await a.send(type="send", client_id="m1", text="hello", ask=False)
    assert (await b.expect(lambda f: f["type"] == "message"))["message"]["text"] == "hello"
    await a.close()
    await b.close()


async def test_closed_sockets_leave_no_members_behind(
    servers, layer_env, admin_user, alice, shared_room
):
    server = servers(layer_env)

    async def status() -> dict:
        return await server_status(server, admin_user)

    async def redis_subscribers() -> int:
        import redis.asyncio as aioredis

        client = aioredis.from_url(layer_env["REDIS_URL"])
        channel = f"{layer_env['PARLEY_LAYER_PREFIX']}__group__{shared_room.group_name}"
        ((_, count),) = await client.pubsub_numsub(channel)
        await client.aclose()
        return count

    peers = [await Peer.connect(server, shared_room, alice) for _ in range(20)]
    assert sum((await status())["rooms"].values()) == 20
    if "REDIS_URL" in layer_env:  # one subscription for the process, not one per socket
        assert await redis_subscribers() == 1
    for peer in peers[:10]:
        peer.drop()  # cut without a closing handshake
    await asyncio.gather(*(peer.close() for peer in peers[10:]))
    for _ in range(50):
        state = await status()
        if not state["rooms"]:
            break
        await asyncio.sleep(0.1)
    assert state["rooms"] == {} and state["sockets"] == 0
    if "REDIS_URL" in layer_env:  # and the process left the room's Redis channel
        assert await redis_subscribers() == 0


def message_seqs(frames: list[dict[str, Any]]) -> list[int]:
    """The ``seq`` of every room message among ``frames``, in the order they came."""
    return [f["message"]["seq"] for f in frames if f["type"] == "message"]


async def stall_one_while_the_room_chats(
    server: Server, admin_user: Any, room: Any, asker: Any, chatter: Any, staller: Any
) -> tuple[Peer, Peer, StalledReader, list[str]]:
    """Connect ``asker`` and ``chatter``, and ``staller`` on a socket it stops reading. An
    answer streams while ``chatter`` posts big messages until the server drops the stalled
    socket from the room. Returns the two peers, the stalled client and the client ids sent."""
    group = room.group_name
    a, b = await members(server, room, asker, chatter)
    stalled = await StalledReader.connect(server, room, staller)
    assert (await server_status(server, admin_user))["rooms"] == {group: 3}
    stalled.stop_reading()
    await a.send(type="send", client_id="q", text="stream something")
    await a.answer_started()
    sent: list[str] = []
    for _ in range(50):  # at most 1,000 messages of 29 kB
        for _ in range(20):
            sent.append(f"b{len(sent)}")
            await b.send(type="send", client_id=sent[-1], text=f"{sent[-1]} {BIG}", ask=False)
        await b.expect(lambda f: f["type"] == "ack" and f["client_id"] == sent[-1])
        if (await server_status(server, admin_user))["rooms"] == {group: 2}:
            return a, b, stalled, sent
    raise AssertionError(f"the stalled client was still in the room after {len(sent)} messages")


BIG = "x" * 29_000
STALL_OPTIONS = {
    # A small backlog; messages near the frame size limit fill the socket buffers fast; no
    # flood limits: the chatter posts as fast as it can.
    "PARLEY_TEST_OPTIONS": json.dumps(
        {
            "MAX_BACKLOG": 20,
            "MAX_MESSAGE_CHARS": 30_000,
            "RATE_LIMITS": {"CONNECTION": None, "USER": None},
        }
    )
}


async def test_a_client_that_stops_reading_is_cut_off_and_nobody_else_waits(
    servers, admin_user, alice, bob, shared_room
):
    server = servers({**scripted_backend(repeat=300, delay=0.005), **STALL_OPTIONS})
    a, b, stalled, sent = await stall_one_while_the_room_chats(
        server, admin_user, shared_room, alice, bob, alice
    )
    # Reading again, the stalled client gets what was on its way, without a gap, then 4008.
    got, code = await stalled.read_to_the_end()
    assert code == 4008
    seqs = message_seqs(got)
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) < len(sent)  # it was cut off, not sent everything

    # The room went on: nobody else lost or reordered a frame.
    for n in range(5):
        sent.append(f"after{n}")
        await b.send(type="send", client_id=sent[-1], text=f"{sent[-1]} {BIG}", ask=False)
    await b.expect(lambda f: f["type"] == "ack" and f["client_id"] == sent[-1])
    for peer in (a, b):
        text, final = await follow_answer(peer)
        assert final["status"] == "complete"
        assert text == final["text"] == "tok " * 300
        await peer.expect(
            lambda f: f["type"] == "message" and f["message"].get("client_id") == sent[-1]
        )
        assert message_seqs(peer.frames) == list(range(1, len(sent) + 3))  # + question, answer
    acks = [f["client_id"] for f in b.frames if f["type"] == "ack"]
    assert acks == sent
    state = await server_status(server, admin_user)
    assert (state["rooms"], state["sockets"], state["backlogged"]) == (
        {shared_room.group_name: 2},
        2,
        0,
    )
    await a.close()
    await b.close()


async def test_the_server_lets_go_of_a_client_that_never_reads_again(
    servers, admin_user, alice, bob, shared_room
):
    server = servers({**scripted_backend(repeat=300, delay=0.005), **STALL_OPTIONS})
    a, b, stalled, _ = await stall_one_while_the_room_chats(
        server, admin_user, shared_room, alice, bob, alice
    )
    assert server.ports_connected_to(stalled.local_port)
    # parley.uvicorn gives a closing client close_timeout (10 s) to read, then aborts.
    for _ in range(30):
        if not server.ports_connected_to(stalled.local_port):
            break
        await asyncio.sleep(0.5)
    assert not server.ports_connected_to(stalled.local_port), "the server still holds it"
    await a.close()
    await b.close()


@contextlib.contextmanager
def database_outage(kind: str, server: Server) -> Iterator[None]:
    """The database is unavailable to ``server`` until the block ends.

    ``locked``: another session holds a lock that blocks writing messages (SQLite: the
    database's write lock; PostgreSQL: an EXCLUSIVE lock on the message table); reads go on.
    ``cut_off`` (PostgreSQL): the server's connections are terminated and new ones refused,
    as when the database restarts or fails over.
    """
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        db = sqlite3.connect(settings["NAME"], isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
        return
    import psycopg

    params = {
        "dbname": settings["NAME"],
        "user": settings["USER"],
        "password": settings["PASSWORD"] or None,
        "host": settings["HOST"] or None,
        "port": settings["PORT"] or None,
    }
    if kind == "locked":
        with psycopg.connect(**params, autocommit=True) as db, db.transaction():
            db.execute(f"LOCK TABLE {Message._meta.db_table} IN EXCLUSIVE MODE")
            yield
        return
    # From the maintenance database: a session may not lock others out of its own.
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as db:
        name = psycopg.sql.Identifier(settings["NAME"])
        ports = server.ports_connected_to(int(settings["PORT"] or 5432))
        assert ports, "the server holds no database connection to cut"
        db.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            cut = db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND client_port = ANY(%s)",
                [settings["NAME"], ports],
            ).fetchall()
            assert cut and all(ok for (ok,) in cut)
            yield
        finally:
            db.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))


@database_sync_to_async
def room_state(room: Any, client_id: str) -> tuple[int, int]:
    """The room's last sequence number, and how many of its messages carry ``client_id``."""
    room.refresh_from_db()
    return room.last_seq, Message.objects.filter(room=room, client_id=client_id).count()


# An SQLite database has no server connections to cut off.
OUTAGES = ["locked", "cut_off"] if connection.vendor == "postgresql" else ["locked"]


@pytest.mark.parametrize("kind", OUTAGES)
async def test_a_message_sent_while_the_database_is_unavailable_is_stored_once_on_resend(
    servers, alice, bob, shared_room, kind
):
    server = servers({"PARLEY_TEST_DB_TIMEOUT": "0.5"})
    a, b = await members(server, shared_room, alice, bob)
    await a.send(type="send", client_id="c0", text="before", ask=False)
    await a.expect(lambda f: f["type"] == "ack" and f["client_id"] == "c0")
    last_seq, _ = await room_state(shared_room, "c1")

    with database_outage(kind, server):
        await a.send(type="send", client_id="c1", text="during the outage")
        error = await a.expect(lambda f: f["type"] == "error")
    assert (error["code"], error["client_id"]) == ("unavailable", "c1")
    assert "try again" in error["detail"]
    # Nothing of it was stored: no message, no sequence number taken, no answer begun.
    assert await room_state(shared_room, "c1") == (last_seq, 0)

    # The database is back: the client resends the same frame, and it is stored once.
    await a.send(type="send", client_id="c1", text="during the outage")
    ack = await a.expect(lambda f: f["type"] == "ack" and f["client_id"] == "c1")
    assert ack["duplicate"] is False and ack["message"]["seq"] == last_seq + 1
    seen = await b.expect(
        lambda f: f["type"] == "message" and f["message"].get("client_id") == "c1"
    )
    assert seen["message"]["id"] == ack["message"]["id"]
    _, done = await follow_answer(b, message_id=(await b.answer_started())["id"])
    assert done["status"] == "complete"
    # Its ack lost, say, the client resends once more: recognised, not stored again.
    await a.send(type="send", client_id="c1", text="during the outage")
    again = await a.expect(lambda f: f["type"] == "ack" and f["client_id"] == "c1")
    assert again["duplicate"] is True and again["message"]["id"] == ack["message"]["id"]
    assert await room_state(shared_room, "c1") == (last_seq + 2, 1)  # the message, its answer
    assert message_seqs(b.frames) == list(range(1, last_seq + 3))
    await a.close()
    await b.close()
