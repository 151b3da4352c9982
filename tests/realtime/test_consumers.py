"""The room socket through the real ASGI stack (Origin validator, session auth, router)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from example.asgi import application
from parley.models import Message
from parley.realtime import consumers
from parley.testing import AnswerText, RoomClient
from tests.conftest import scripted

pytestmark = [pytest.mark.django_db(transaction=True)]


async def joined(connect, room, user) -> RoomClient:
    client = await connect(room, user)
    assert client.connected
    hello = await client.expect("hello")
    assert hello["room"]["id"] == room.public_id
    return client


async def long_answer_streaming(connect, room, asker, other, backend, *, repeat: int):
    """Two members in ``room``; ``asker`` has asked, and the answer (``repeat`` words, 10 ms
    apart) has started reaching ``other``. Returns their clients."""
    backend(reply="word ", repeat=repeat, delay=0.01)
    a = await joined(connect, room, asker)
    b = await joined(connect, room, other)
    await a.send(type="send", client_id="q1", text="talk a lot")
    await b.expect("delta")
    return a, b


async def finished(client: RoomClient, timeout: float = 10) -> dict:
    return (await client.expect("done", timeout=timeout))["message"]


def stored(room, **filters) -> list[Message]:
    return list(Message.objects.filter(room=room, **filters).order_by("seq"))


async def test_hello_names_room_user_and_limits(connect, alice, private_room, backend):
    client = await connect(private_room, alice)
    hello = await client.expect("hello")
    assert hello["v"] == 1
    assert hello["user"]["name"] == "alice"
    assert hello["room"] == {"id": private_room.public_id, "title": "Notes", "kind": "private"}
    assert hello["last_seq"] == 0
    assert hello["limits"]["max_message_chars"] > 0


async def test_anonymous_socket_is_told_and_closed(connect, private_room, backend):
    client = await connect(private_room, None)
    error = await client.expect("error")
    assert error["code"] == "unauthenticated"
    assert await client.closed() == 4401


async def test_non_member_and_unknown_room_are_refused_alike(connect, bob, private_room, backend):
    client = await connect(private_room, bob)
    error = await client.expect("error")
    assert error["code"] == "forbidden"
    assert await client.closed() == 4403
    ghost = await connect(private_room, bob, path="/ws/rooms/not-a-room/")
    assert (await ghost.expect("error"))["detail"] == error["detail"]


@pytest.mark.parametrize("origin", ["http://evil.example", None])
async def test_foreign_or_missing_origin_is_refused_at_handshake(
    connect, alice, private_room, origin, backend
):
    client = await connect(private_room, alice, origin=origin)
    assert not client.connected


async def test_message_is_stored_acked_broadcast_and_answered(
    connect, alice, bob, shared_room, backend
):
    a = await joined(connect, shared_room, alice)
    b = await joined(connect, shared_room, bob)
    await a.send(type="send", client_id="c1", text="hello there")
    ack = await a.expect("ack")
    assert ack["client_id"] == "c1" and not ack["duplicate"]
    assert ack["message"]["seq"] == 1 and ack["message"]["text"] == "hello there"
    seen = await b.expect("message")
    assert seen["message"]["id"] == ack["message"]["id"]
    assert seen["message"]["author"]["name"] == "alice"
    started = await b.expect("message")
    assert started["message"]["role"] == "assistant" and started["message"]["status"] == "streaming"
    for client in (a, b):
        final = await finished(client)
        assert final["status"] == "complete"
        assert final["text"] == "Echo: hello there"
        assert final["html"] == "<p>Echo: hello there</p>\n"
    rows = await database_sync_to_async(stored)(shared_room)
    assert [(m.seq, m.role, m.status) for m in rows] == [
        (1, "user", "complete"),
        (2, "assistant", "complete"),
    ]


async def test_deltas_rebuild_the_answer_in_order(connect, alice, private_room, backend):
    backend(reply="one two three four five six seven eight", delay=0.005)
    client = await joined(connect, private_room, alice)
    await client.send(type="send", client_id="c1", text="count")
    text = ""
    while True:
        frame = await client.receive()
        if frame["type"] == "delta":
            assert frame["offset"] == len(text)
            text += frame["text"]
        elif frame["type"] == "done":
            break
    assert text == frame["message"]["text"] == "one two three four five six seven eight"


async def test_first_delta_goes_out_at_once_and_the_rest_are_coalesced(
    connect, alice, private_room, settings
):
    settings.PARLEY = {
        **scripted(reply="x ", repeat=400, delay=0.001),
        "STREAM_FLUSH_INTERVAL": 0.05,
    }
    client = await joined(connect, private_room, alice)
    await client.send(type="send", client_id="c1", text="many small pieces")
    deltas = []
    while (frame := await client.receive())["type"] != "done":
        if frame["type"] == "delta":
            deltas.append(frame["text"])
    assert deltas[0] == "x "  # the first piece alone, not held back for the interval
    assert "".join(deltas) == frame["message"]["text"] == "x " * 400
    # 400 pieces at least 1 ms apart take 0.4 s or more: at most one flush per 50 ms.
    assert len(deltas) < 400 / 5


async def test_resend_after_reconnect_is_not_stored_twice(connect, alice, private_room, backend):
    client = await joined(connect, private_room, alice)
    await client.send(type="send", client_id="same", text="once", ask=False)
    first = await client.expect("ack")
    await client.disconnect()
    again = await joined(connect, private_room, alice)
    await again.send(type="send", client_id="same", text="once", ask=False)
    second = await again.expect("ack")
    assert second["duplicate"] and second["message"]["id"] == first["message"]["id"]
    assert len(await database_sync_to_async(stored)(private_room)) == 1


async def test_ask_false_stores_without_answer(connect, alice, bob, shared_room, backend):
    a = await joined(connect, shared_room, alice)
    await a.send(type="send", client_id="c1", text="just us", ask=False)
    await a.expect("ack")
    await a.send(type="resume", after=0)
    history = await a.expect("history")
    assert [m["role"] for m in history["messages"]] == ["user"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{oops", "bad_json"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "send", "client_id": "c", "text": 1}', "bad_frame"),
        ('{"type": "send", "client_id": "c", "text": ""}', "empty_text"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    connect, alice, private_room, raw, code, backend
):
    client = await joined(connect, private_room, alice)
    await client.send_raw(raw)
    error = await client.expect("error")
    assert error["code"] == code and error["detail"]
    await client.send(type="send", client_id="after", text="still here", ask=False)
    assert (await client.expect("ack"))["message"]["text"] == "still here"
    assert [m.text for m in await database_sync_to_async(stored)(private_room)] == ["still here"]


async def test_binary_and_oversize_frames_are_refused(
    connect, alice, private_room, backend, settings
):
    settings.PARLEY = {**settings.PARLEY, "MAX_FRAME_BYTES": 1000}
    client = await joined(connect, private_room, alice)
    await client.send_raw(data=b"\x00\x01")
    assert (await client.expect("error"))["code"] == "binary_frame"
    await client.send(type="send", client_id="big", text="é" * 600)  # 1,200 bytes in UTF-8
    error = await client.expect("error")
    assert error["code"] == "frame_too_large" and "1000" in error["detail"]
    assert await database_sync_to_async(stored)(private_room) == []


async def test_resume_sends_missed_messages_in_pages(
    connect, alice, private_room, backend, settings
):
    settings.PARLEY = {**settings.PARLEY, "HISTORY_PAGE_SIZE": 2}
    client = await joined(connect, private_room, alice)
    for n in range(5):
        await client.send(type="send", client_id=f"m{n}", text=f"m{n}", ask=False)
        await client.expect("ack")
    await client.send(type="resume", after=1)
    page = await client.expect("history")
    assert [m["seq"] for m in page["messages"]] == [2, 3] and page["more"]
    await client.send(type="resume", after=page["last_seq"])
    page = await client.expect("history")
    assert [m["seq"] for m in page["messages"]] == [4, 5] and not page["more"]
    await client.send(type="resume", after=5)
    page = await client.expect("history")
    assert page["messages"] == [] and page["last_seq"] == 5 and not page["more"]


async def test_any_member_can_stop_an_answer(connect, alice, bob, shared_room, backend):
    a, b = await long_answer_streaming(connect, shared_room, alice, bob, backend, repeat=500)
    await b.send(type="cancel")
    final = await finished(a)
    assert final["status"] == "cancelled"
    assert 0 < len(final["text"]) < len("word ") * 500
    row = (await database_sync_to_async(stored)(shared_room, role="assistant"))[0]
    assert row.status == "cancelled" and row.text == final["text"]


async def test_cancel_without_streaming_answer_is_an_error(connect, alice, private_room, backend):
    client = await joined(connect, private_room, alice)
    await client.send(type="cancel")
    assert (await client.expect("error"))["code"] == "nothing_to_cancel"


async def test_answer_completes_after_the_asker_disconnects(
    connect, alice, bob, shared_room, backend
):
    backend(reply="word ", repeat=40, delay=0.01)
    a = await joined(connect, shared_room, alice)
    b = await joined(connect, shared_room, bob)
    await a.send(type="send", client_id="c1", text="go on without me")
    await a.expect("delta")
    await a.disconnect()
    final = await finished(b)
    assert final["status"] == "complete" and final["text"] == "word " * 40


async def test_resume_mid_answer_gets_text_so_far_then_live_deltas(
    connect, alice, private_room, backend
):
    backend(reply="tick ", repeat=2000, delay=0.01)
    first = await joined(connect, private_room, alice)
    await first.send(type="send", client_id="c1", text="stream please")
    for _ in range(5):
        await first.expect("delta")
    await first.disconnect()
    await asyncio.sleep(0.1)
    second = await joined(connect, private_room, alice)
    await second.send(type="resume", after=0)
    history = await second.expect("history")
    (answer,) = [m for m in history["messages"] if m["status"] == "streaming"]
    copy = AnswerText(answer["text"])
    deltas = 0
    while True:
        frame = await second.receive()
        if frame["type"] == "delta":
            copy.apply(frame["offset"], frame["text"], frame.get("blocks"))
            deltas += 1
            if deltas == 5:
                await second.send(type="cancel")
        elif frame["type"] == "done":
            break
    assert frame["message"]["status"] == "cancelled"
    assert len(copy.text) > len("tick ") * 5
    assert copy.text == frame["message"]["text"]
    assert copy.pending == {}
    assert copy.html and copy.rendered > 0  # the snapshot's blocks, then live ones after them


async def test_an_answer_streams_as_formatted_blocks_and_ends_as_them(
    connect, alice, private_room, settings
):
    """Every delta renders (no interval): each block comes formatted while the answer is
    written, once settled it is never sent again, and the finished answer's HTML is the
    blocks the client already has."""
    reply = "## Answer\n\nUse **nginx** with `proxy_pass`:\n\n| header | value |\n|---|---|\n"
    settings.PARLEY = {
        **scripted(reply=reply + "| Upgrade | websocket |\n\nDone.", delay=0.02),
        "STREAM_RENDER_INTERVAL": 0,
    }
    client = await joined(connect, private_room, alice)
    await client.send(type="send", client_id="c1", text="how do I deploy?")
    copy = AnswerText()
    sent: list[str] = []
    while (frame := await client.receive())["type"] != "done":
        if frame["type"] == "delta" and "blocks" in frame:
            assert copy.apply_blocks(frame["blocks"])
            sent += frame["blocks"]["html"]
    assert "<h2>Answer</h2>\n" in copy.html[:1]
    assert "<p>Use <strong>nginx</strong> with <code>proxy_pass</code>:</p>\n" in copy.html
    # The heading is sent while it is the block being written, never once a block follows.
    heading = max(i for i, block in enumerate(sent) if block == "<h2>Answer</h2>\n")
    assert heading < min(i for i, block in enumerate(sent) if block.startswith("<p>Use"))
    assert any(block.startswith("<table>") for block in sent)
    assert frame["message"]["html"].startswith("".join(copy.html[:-1]))


async def test_failed_backend_gives_failed_message_and_error_frame(
    connect, alice, private_room, backend
):
    backend(reply="a b c d", fail_after=2, error="Upstream exploded.")
    client = await joined(connect, private_room, alice)
    await client.send(type="send", client_id="c1", text="try")
    final = await finished(client)
    assert final["status"] == "failed" and final["error"] == "Upstream exploded."
    assert final["text"] == "a b "
    error = await client.expect("error")
    assert error["code"] == "assistant_failed" and error["message_id"] == final["id"]
    backend(reply="fine now")
    await client.send(type="send", client_id="c2", text="again")
    assert (await finished(client))["status"] == "complete"


async def test_ticket_lets_a_cookieless_client_into_its_room_only(
    connect, alice, private_room, shared_room, backend, settings
):
    from parley.auth import ticket_issue

    ticket = await database_sync_to_async(ticket_issue)(user=alice, room=private_room.public_id)
    path = f"/ws/rooms/{private_room.public_id}/?ticket={ticket}"
    client = await connect(private_room, None, path=path)
    assert (await client.expect("hello"))["user"]["name"] == "alice"
    elsewhere = await connect(
        shared_room, None, path=f"/ws/rooms/{shared_room.public_id}/?ticket={ticket}"
    )
    assert (await elsewhere.expect("error"))["code"] == "forbidden"
    forged = await connect(private_room, None, path=path[:-3] + "xyz")
    assert (await forged.expect("error"))["code"] == "unauthenticated"
    settings.PARLEY = {**settings.PARLEY, "TICKET_MAX_AGE": -1}
    expired = await connect(private_room, None, path=path)
    assert (await expired.expect("error"))["code"] == "unauthenticated"


def limits(settings, **rate_limits) -> None:
    settings.PARLEY = {**settings.PARLEY, "RATE_LIMITS": rate_limits}


async def test_a_socket_over_its_frame_rate_is_told_to_wait_and_nothing_is_stored(
    connect, alice, private_room, backend, settings
):
    limits(settings, CONNECTION=(5, 3), USER=None)
    client = await joined(connect, private_room, alice)
    for n in range(4):
        await client.send(type="send", client_id=f"m{n}", text=f"message {n}", ask=False)
    for n in range(3):
        assert (await client.expect("ack"))["client_id"] == f"m{n}"
    refused = await client.expect("error")
    assert refused["code"] == "rate_limited" and 0 < refused["retry_after"] <= 0.2
    await asyncio.sleep(refused["retry_after"])
    await client.send(type="send", client_id="m3", text="message 3", ask=False)
    assert (await client.expect("ack"))["client_id"] == "m3"
    texts = [m.text for m in await database_sync_to_async(stored)(private_room)]
    assert texts == ["message 0", "message 1", "message 2", "message 3"]


async def test_the_user_limit_is_shared_by_all_their_sockets(
    connect, alice, bob, shared_room, backend, settings
):
    limits(settings, CONNECTION=None, USER=(0.5, 2))
    first = await joined(connect, shared_room, alice)
    second = await joined(connect, shared_room, alice)
    other = await joined(connect, shared_room, bob)
    for client, client_id in ((first, "a1"), (second, "a2")):
        await client.send(type="send", client_id=client_id, text=client_id, ask=False)
        await client.expect("ack", client_id=client_id)
    await second.send(type="send", client_id="a3", text="a3", ask=False)
    refused = await second.expect("error")
    assert (refused["code"], refused["client_id"]) == ("rate_limited", "a3")
    await other.send(type="send", client_id="b1", text="b1", ask=False)  # others are not limited
    await other.expect("ack", client_id="b1")
    texts = [m.text for m in await database_sync_to_async(stored)(shared_room)]
    assert texts == ["a1", "a2", "b1"]


async def test_a_socket_that_keeps_flooding_is_closed_with_4029(
    connect, alice, private_room, backend, settings
):
    limits(settings, CONNECTION=(1, 2), USER=None, STRIKES=5)
    client = await joined(connect, private_room, alice)
    for _ in range(10):
        await client.send(type="cancel")
    codes = []
    while len(codes) < 8:
        frame = await client.expect("error")
        codes.append(frame["code"])
    assert codes == ["nothing_to_cancel"] * 2 + ["rate_limited"] * 6
    assert await client.closed() == 4029


def pushing_back(app):
    """The real application behind a client that pushes back: every frame's write waits a
    turn of the event loop, as a write to a socket whose buffer is full waits for the client
    to read; meanwhile the socket's outbox queues what follows."""

    async def wrapped(scope, receive, send):
        async def blocked_send(message):
            if message["type"] == "websocket.send":
                await asyncio.sleep(0)
            await send(message)

        await app(scope, receive, blocked_send)

    return wrapped


async def test_a_refused_socket_gets_its_error_frame_before_the_close(private_room, backend):
    """The close waits in the write queue behind the error frame saying why, instead of
    overtaking it while that frame's write is blocked."""
    client = await RoomClient.connect(pushing_back(application), private_room, None)
    try:
        assert await client.closed() == 4401
        assert [frame["code"] for frame in client.frames] == ["unauthenticated"]
    finally:
        await client.disconnect()


async def test_a_flooding_socket_gets_its_last_error_frame_before_the_close(
    alice, private_room, backend, settings
):
    limits(settings, CONNECTION=(1, 2), USER=None, STRIKES=5)
    client = await RoomClient.connect(pushing_back(application), private_room, alice)
    try:
        await client.expect("hello")
        for _ in range(10):
            await client.send(type="cancel")
        assert await client.closed() == 4029
        last = client.frames[-1]
        assert (last["code"], last["detail"]) == (
            "rate_limited",
            "Too many frames past the rate limit.",
        )
    finally:
        await client.disconnect()


def stalled_after_hello(app, released: asyncio.Event):
    """The real application behind a client that stops reading once it has its ``hello``:
    every later frame's write waits (until ``released``), as a write to a socket whose
    client reads nothing waits for ever; closes still go through."""

    async def wrapped(scope, receive, send):
        greeted = False

        async def stuck_send(message):
            nonlocal greeted
            if message["type"] == "websocket.send":
                if greeted:
                    await released.wait()
                greeted = True
            await send(message)

        await app(scope, receive, stuck_send)

    return wrapped


async def test_a_flooding_socket_that_reads_nothing_is_closed_all_the_same(
    alice, private_room, backend, settings, monkeypatch
):
    """Its refusals wait behind a write that never completes: the 4029 close cannot wait
    there for ever, or the socket (and what it holds) would stay open."""
    monkeypatch.setattr(consumers, "CLOSE_GRACE", 0.2)
    limits(settings, CONNECTION=(1, 2), USER=None, STRIKES=5)
    released = asyncio.Event()
    client = await RoomClient.connect(
        stalled_after_hello(application, released), private_room, alice
    )
    try:
        await client.expect("hello")
        for _ in range(10):
            await client.send(type="cancel")
        assert await client.closed() == 4029
    finally:
        released.set()
        await client.disconnect()
