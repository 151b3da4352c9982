"""A real uvicorn server (subprocess) driven by real WebSocket clients, on the in-memory
layer and on Redis, including two servers sharing rooms through Redis."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from asgiref.sync import sync_to_async

from parley.testing import AnswerText
from tests.servers import Peer

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


def slow_backend(reply: str = "tok ", repeat: int = 80, delay: float = 0.02) -> dict[str, str]:
    options = {"reply": reply, "repeat": repeat, "delay": delay}
    return {
        "PARLEY_TEST_BACKEND": json.dumps(
            {"BACKEND": "parley.backends.scripted.ScriptedBackend", "OPTIONS": options}
        )
    }


@pytest.fixture(params=["memory", "redis"])
def layer_env(request) -> dict[str, str]:
    if request.param == "redis":
        return request.getfixturevalue("redis_env")
    return {}


async def follow_answer(
    peer: Peer, text: str = "", cancel_after: int | None = None
) -> tuple[str, dict]:
    """Apply deltas until the answer is done (sending a cancel after ``cancel_after`` deltas);
    returns the client's copy of the text and the final message."""
    copy = AnswerText(text)
    deltas = 0
    while True:
        frame = await peer.expect(lambda f: f["type"] in {"delta", "done"})
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
    server = servers({**layer_env, **slow_backend(repeat=20, delay=0.005)})
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


async def test_reconnect_resumes_without_loss(servers, layer_env, alice, bob, shared_room):
    server = servers({**layer_env, **slow_backend(repeat=2000, delay=0.01)})
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
    env = {**redis_env, **slow_backend(repeat=2000, delay=0.01)}
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
    env = {**redis_env, **slow_backend(repeat=2000, delay=0.01), **options}
    doomed, survivor = servers(env, name="doomed"), servers(env, name="survivor")
    on_doomed = await Peer.connect(doomed, shared_room, alice)
    on_survivor = await Peer.connect(survivor, shared_room, bob)
    await on_doomed.send(type="send", client_id="q1", text="long one")
    started = await on_survivor.answer_started()
    await on_survivor.expect(lambda f: f["type"] == "delta")
    doomed.stop(sig)
    if sig == signal.SIGKILL:
        # Nobody is left to say so: the next member to resume finds the heartbeat gone.
        await asyncio.sleep(1.5)
        await on_survivor.send(type="resume", after=started["seq"] - 1)
    done = await on_survivor.expect(lambda f: f["type"] == "done")
    assert done["message"]["id"] == started["id"]
    assert done["message"]["status"] == "interrupted"
    # The room is usable again: ask again on the surviving server.
    await on_survivor.send(type="send", client_id="q2", text="once more")
    retry = await on_survivor.answer_started(not_id=started["id"])
    assert retry["status"] == "streaming"
    await on_survivor.send(type="cancel")
    await on_survivor.expect(lambda f: f["type"] == "done" and f["message"]["id"] == retry["id"])
    await on_survivor.close()


async def test_closed_sockets_leave_no_members_behind(
    servers, layer_env, admin_user, alice, shared_room
):
    import aiohttp

    from parley.testing import session_cookie

    server = servers(layer_env)
    cookie = await sync_to_async(session_cookie)(admin_user)

    async def status() -> dict:
        async with (
            aiohttp.ClientSession(headers={"Cookie": cookie}) as http,
            http.get(f"{server.http_url}/status/") as response,
        ):
            assert response.status == 200
            return await response.json()

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
