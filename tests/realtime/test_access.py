"""Rights on live sockets and tickets, against real uvicorn servers with real WebSocket
clients: a socket whose user is removed from the room, deactivated, logged out or given a new
password is closed (4403 / 4401) on every server process, and a ticket opens one socket once,
for as long as its password and session last. Also the per-user socket cap."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session
from websockets.frames import Frame, Opcode

from parley.models import Membership, Message, Room
from parley.realtime import auth
from parley.rooms import services
from parley.testing import session_cookie
from tests.servers import Peer, Server, server_status
from tests.sockets import (
    LONG_ANSWER,
    long_answer_streaming,
    only_error,
    refused_socket,
    room_path,
    still_streaming_then_complete,
)

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]

AFTER_REVOCATION = [
    {"type": "send", "client_id": "late", "text": "still here?"},
    {"type": "resume", "after": 0},
    {"type": "cancel"},
]


@pytest.fixture
def redis_layer(settings, redis_env) -> dict[str, str]:
    """The servers' Redis environment, with this test process on the same channel layer, so
    that what the test changes in the database reaches the servers as a signal in another
    process would (an admin's, a shell's)."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [redis_env["REDIS_URL"]],
                "prefix": redis_env["PARLEY_LAYER_PREFIX"],
            },
        }
    }
    return redis_env


async def new_session(user: Any) -> tuple[str, str]:
    """A fresh logged-in session for ``user``: ``(Cookie header value, session key)``."""
    cookie = await sync_to_async(session_cookie)(user)
    return cookie, cookie.split("=", 1)[1]


def post(server: Server, path: str, cookie: str, **fields: str) -> int:
    """POST ``path`` (with the form ``fields``) as a browser on the site would (session
    cookie, CSRF token and Origin); the response's status (redirects are not followed)."""
    token = secrets.token_hex(16)
    request = urllib.request.Request(
        server.http_url + path,
        data=urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode(),
        method="POST",
        headers={
            "Cookie": f"{cookie}; csrftoken={token}",
            "Origin": server.http_url,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def closed_with(peer: Peer, error: str) -> int:
    """The socket is told ``error`` and closed; the close code. Nothing comes after the
    error."""
    frame = await peer.expect(lambda f: f["type"] == "error")
    assert frame["code"] == error, frame
    await asyncio.wait_for(peer.reader, 10)
    assert peer.frames[-1] is frame, peer.frames[-3:]
    return peer.ws.close_code


async def still_open(peer: Peer, client_id: str) -> None:
    """The socket still posts: its message is acknowledged."""
    await peer.send(type="send", client_id=client_id, text="still here", ask=False)
    await peer.expect(lambda f: f["type"] == "ack" and f["client_id"] == client_id)


def raw_send(peer: Peer, frame: dict[str, Any]) -> None:
    """Write a text frame on the socket whatever its client's state (websockets would refuse
    once it has seen the close): what a hostile client can do."""
    data = Frame(Opcode.TEXT, json.dumps(frame).encode()).serialize(mask=True, extensions=[])
    peer.ws.transport.write(data)


async def sockets_on(server: Server, staff: Any) -> int:
    return (await server_status(server, staff))["sockets"]


async def sockets_are(server: Server, staff: Any, count: int) -> bool:
    return await sockets_on(server, staff) == count


async def until(predicate: Any, tries: int = 100) -> None:
    """Poll ``predicate`` (a coroutine function) until it is true; fail after ``tries``."""
    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the condition never held")


def authors_in(room: Room) -> set[Any]:
    return set(Message.objects.filter(room=room).values_list("author", flat=True))


async def test_a_removed_member_is_closed_with_4403_and_its_later_frames_do_nothing(
    servers, redis_layer, admin_user, alice, bob, shared_room
):
    """Bob stops reading; he is removed from the room while Alice's answer streams. The
    server drops his socket from the room; the send, resume and cancel he then writes on it
    do nothing; once he reads again he finds one `forbidden` error and close 4403, nothing
    after it. Alice's answer streams on to the end, and nothing of Bob's is stored."""
    server = servers({**redis_layer, **LONG_ANSWER})
    peer, answer = await long_answer_streaming(server, shared_room, alice)
    bob_peer = await Peer.connect(server, shared_room, bob)
    assert await sockets_on(server, admin_user) == 2
    bob_peer.ws.transport.pause_reading()

    await sync_to_async(services.room_member_remove)(room=shared_room, user=bob, by=alice)
    await until(lambda: sockets_are(server, admin_user, 1))
    for frame in AFTER_REVOCATION:
        raw_send(bob_peer, frame)
    bob_peer.ws.transport.resume_reading()

    assert await closed_with(bob_peer, "forbidden") == 4403
    assert not [f for f in bob_peer.frames if f["type"] in ("ack", "history")]
    frames, code = await refused_socket(
        server,
        room_path(shared_room),
        {"Cookie": await sync_to_async(session_cookie)(bob), "Origin": server.http_url},
        then_send=AFTER_REVOCATION,
    )
    only_error(frames, "forbidden")
    assert code == 4403
    await still_streaming_then_complete(peer, answer)
    assert await sync_to_async(authors_in)(shared_room) == {alice.pk, None}
    await peer.close()


async def test_a_deactivated_or_deleted_user_is_closed_with_4401_in_every_room(
    servers, redis_layer, make_user, alice, bob, shared_room
):
    """Bob, in a shared room and a room of his own, is deactivated (by another process, as
    the admin would): both his sockets get `unauthenticated` and 4401. Carol is deleted:
    the same. Alice's socket stays."""
    server = servers(redis_layer)
    carol = await sync_to_async(make_user)("carol")
    await sync_to_async(services.room_member_add)(room=shared_room, by=alice, user=carol)
    own = await sync_to_async(services.room_create)(owner=bob, title="Bob's", kind="private")
    a = await Peer.connect(server, shared_room, alice)
    b1 = await Peer.connect(server, shared_room, bob)
    b2 = await Peer.connect(server, own, bob)
    c = await Peer.connect(server, shared_room, carol)

    bob.is_active = False
    await sync_to_async(bob.save)()
    await sync_to_async(carol.delete)()

    assert await closed_with(b1, "unauthenticated") == 4401
    assert await closed_with(b2, "unauthenticated") == 4401
    assert await closed_with(c, "unauthenticated") == 4401
    await still_open(a, "a1")
    await a.close()


async def test_a_password_change_closes_the_users_sockets_with_4401(
    servers, redis_layer, alice, bob, shared_room
):
    """Bob's password is changed: his socket is closed (its session's auth hash no longer
    matches), and a ticket issued before the change opens nothing. A save that changes no
    right (his last login) closes nothing."""
    server = servers(redis_layer)
    a = await Peer.connect(server, shared_room, alice)
    b = await Peer.connect(server, shared_room, bob)
    ticket = await sync_to_async(auth.ticket_issue)(user=bob, room=shared_room.public_id)
    await sync_to_async(alice.save)()  # a full save, no change of rights
    await still_open(a, "a1")

    bob.set_password("a-new-password-456")
    await sync_to_async(bob.save)()

    assert await closed_with(b, "unauthenticated") == 4401
    await still_open(a, "a2")
    frames, code = await refused_socket(
        server, room_path(shared_room) + f"?ticket={ticket}", {"Origin": server.http_url}
    )
    only_error(frames, "unauthenticated")
    assert code == 4401
    await a.close()


async def test_logout_closes_the_sockets_of_that_session_only(servers, bob, shared_room):
    """Bob is logged in twice (two browsers). Logging out of one through the site's own
    /logout/ view closes that session's socket (4401), and the socket of a ticket issued from
    that session; his other session's socket stays, and that session's tickets still work.
    No Redis: the logout happens in the server process itself."""
    server = servers()
    cookie1, key1 = await new_session(bob)
    cookie2, key2 = await new_session(bob)
    first = await Peer.connect(server, shared_room, bob, Cookie=cookie1)
    second = await Peer.connect(server, shared_room, bob, Cookie=cookie2)
    issue = sync_to_async(auth.ticket_issue)
    ticket1 = await issue(user=bob, room=shared_room.public_id, session_key=key1)
    spare1 = await issue(user=bob, room=shared_room.public_id, session_key=key1)
    ticket2 = await issue(user=bob, room=shared_room.public_id, session_key=key2)
    origin = {"Origin": server.http_url}
    by_ticket = Peer(
        await websockets.connect(
            server.ws_url + room_path(shared_room) + f"?ticket={ticket1}",
            additional_headers=origin,
        )
    )
    await by_ticket.expect(lambda f: f["type"] == "hello")

    assert await sync_to_async(post)(server, "/logout/", cookie1) == 302

    assert await closed_with(first, "unauthenticated") == 4401
    assert await closed_with(by_ticket, "unauthenticated") == 4401
    await still_open(second, "s1")
    frames, code = await refused_socket(
        server, room_path(shared_room) + f"?ticket={spare1}", origin
    )
    only_error(frames, "unauthenticated")
    assert code == 4401
    async with websockets.connect(
        server.ws_url + room_path(shared_room) + f"?ticket={ticket2}", additional_headers=origin
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
    await second.close()


async def test_leaving_on_one_server_closes_the_socket_on_the_other(
    servers, redis_env, alice, bob, shared_room
):
    """Two server processes share rooms through Redis. Bob's socket is on server B; he
    presses "Leave room" on a page of server A: his socket on B is closed with 4403 at once
    (no re-check: it is off), and Alice, on B too, goes on."""
    options = {"PARLEY_TEST_OPTIONS": json.dumps({"RECHECK_INTERVAL": None})}
    server_a = servers({**redis_env, **options}, name="a")
    server_b = servers({**redis_env, **options}, name="b")
    cookie, _ = await new_session(bob)
    a = await Peer.connect(server_b, shared_room, alice)
    b = await Peer.connect(server_b, shared_room, bob, Cookie=cookie)

    path = f"/rooms/{shared_room.public_id}/leave/"
    assert await sync_to_async(post)(server_a, path, cookie) == 302

    assert await closed_with(b, "forbidden") == 4403
    assert not await sync_to_async(Membership.objects.filter(room=shared_room, user=bob).exists)()
    await still_open(a, "a1")
    await a.close()


async def test_deleting_a_room_closes_its_sockets_on_every_server_and_stops_its_answer(
    servers, redis_env, admin_user, alice, bob, shared_room
):
    """Alice deletes her shared room on a page of server A while its answer streams on
    server B, where she and Bob have it open: both sockets are told `room_deleted` and
    closed with 4404 (not 4403: the room is gone, not their membership), the answer stops
    generating, and the room's messages are gone."""
    options = {"PARLEY_TEST_OPTIONS": json.dumps({"RECHECK_INTERVAL": None})}
    server_a = servers({**redis_env, **options}, name="a")
    server_b = servers({**redis_env, **options, **LONG_ANSWER}, name="b")
    cookie, _ = await new_session(alice)
    b, answer = await long_answer_streaming(server_b, shared_room, bob)
    a = await Peer.connect(server_b, shared_room, alice)
    assert (await server_status(server_b, admin_user))["answers"] == [answer["id"]]

    path = f"/rooms/{shared_room.public_id}/delete/"
    assert await sync_to_async(post)(server_a, path, cookie) == 302

    assert await closed_with(a, "room_deleted") == 4404
    assert await closed_with(b, "room_deleted") == 4404
    assert not any(f["type"] == "done" for f in b.frames)  # nobody was left to be told

    async def stopped() -> bool:
        return (await server_status(server_b, admin_user))["answers"] == []

    await until(stopped)
    assert not await sync_to_async(Room.objects.filter(pk=shared_room.pk).exists)()
    assert not await sync_to_async(Message.objects.filter(room_id=shared_room.pk).exists)()


async def test_only_the_owner_renames_and_deletes_and_the_members_see_the_new_title(
    servers, alice, bob, shared_room
):
    """Bob, a member, may neither rename nor delete Alice's room; when she renames it, his
    open socket gets the room's new payload at once."""
    server = servers()
    alice_cookie, _ = await new_session(alice)
    bob_cookie, _ = await new_session(bob)
    b = await Peer.connect(server, shared_room, bob)
    base = f"/rooms/{shared_room.public_id}"
    assert await sync_to_async(post)(server, f"{base}/rename/", bob_cookie, title="Bob's") == 302
    assert await sync_to_async(post)(server, f"{base}/delete/", bob_cookie) == 302
    await sync_to_async(shared_room.refresh_from_db)()
    assert shared_room.title == "Team"
    assert not any(f["type"] == "room" for f in b.frames)

    assert await sync_to_async(post)(server, f"{base}/rename/", alice_cookie, title="Launch") == 302
    frame = await b.expect(lambda f: f["type"] == "room")
    assert frame["room"] == {"id": shared_room.public_id, "title": "Launch", "kind": "shared"}
    await still_open(b, "b1")
    await b.close()


async def inbox(server: Server, cookie: str, origin: str | None = None) -> Any:
    """The room list's socket of the session ``cookie``, once it said hello."""
    headers = {"Cookie": cookie, "Origin": origin or server.http_url}
    ws = await websockets.connect(f"{server.ws_url}/ws/inbox/", additional_headers=headers)
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "hello", "v": 1}
    return ws


async def test_the_room_list_socket_hears_each_change_of_its_rooms_and_ends_with_the_session(
    servers, alice, bob, make_user
):
    """Carol's room list follows her rooms: Alice inviting her, her accepting, the room
    renamed and deleted each send `rooms_changed` (and nothing more: the page asks for its
    list again). Nobody else's list hears of them. Anonymous and foreign sockets are
    refused; her logout closes hers with 4401."""
    server = servers()
    carol = await sync_to_async(make_user)("carol")
    room = await sync_to_async(services.room_create)(owner=alice, title="Trip", kind="shared")
    alice_cookie, _ = await new_session(alice)
    carol_cookie, _ = await new_session(carol)
    carols, bobs = (
        await inbox(server, carol_cookie),
        await inbox(server, (await new_session(bob))[0]),
    )

    async def nudged(ws: Any) -> None:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "rooms_changed"}

    base = f"/rooms/{room.public_id}"
    assert (
        await sync_to_async(post)(server, f"{base}/invite/", alice_cookie, username="carol") == 302
    )
    await nudged(carols)
    invitation = await sync_to_async(lambda: room.invitations.get().pk)()
    assert (
        await sync_to_async(post)(server, f"/invitations/{invitation}/accept/", carol_cookie) == 302
    )
    await nudged(carols)  # the invitation answered
    await nudged(carols)  # the membership made
    assert await sync_to_async(post)(server, f"{base}/rename/", alice_cookie, title="Trip 2") == 302
    await nudged(carols)
    assert await sync_to_async(post)(server, f"{base}/delete/", alice_cookie) == 302
    await nudged(carols)  # the room deleted
    await nudged(carols)  # her membership with it
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(bobs.recv(), 0.5)

    anonymous = await websockets.connect(
        f"{server.ws_url}/ws/inbox/", additional_headers={"Origin": server.http_url}
    )
    assert json.loads(await anonymous.recv())["code"] == "unauthenticated"
    await anonymous.wait_closed()
    assert anonymous.close_code == 4401
    with pytest.raises(websockets.InvalidStatus):
        await inbox(server, carol_cookie, origin="http://evil.example")

    assert await sync_to_async(post)(server, "/logout/", carol_cookie) == 302
    assert json.loads(await asyncio.wait_for(carols.recv(), 10))["code"] == "unauthenticated"
    await carols.wait_closed()
    assert carols.close_code == 4401
    await bobs.close()


async def test_the_periodic_recheck_closes_sockets_whose_rights_ended_without_a_signal(
    servers, make_user, alice, bob, shared_room
):
    """Rights that end without a signal (raw deletes and updates, another application
    writing the database): within RECHECK_INTERVAL the server finds them and closes the
    sockets: Bob's membership deleted (4403), Carol deactivated by a queryset update and
    Dave's session row deleted (4401). Alice keeps hers."""
    server = servers({"PARLEY_TEST_OPTIONS": json.dumps({"RECHECK_INTERVAL": 0.3})})
    carol, dave = [await sync_to_async(make_user)(name) for name in ("carol", "dave")]
    for user in (carol, dave):
        await sync_to_async(services.room_member_add)(room=shared_room, by=alice, user=user)
    cookie, dave_key = await new_session(dave)
    a = await Peer.connect(server, shared_room, alice)
    b = await Peer.connect(server, shared_room, bob)
    c = await Peer.connect(server, shared_room, carol)
    d = await Peer.connect(server, shared_room, dave, Cookie=cookie)

    def end_rights_silently() -> None:
        Membership.objects.filter(room=shared_room, user=bob)._raw_delete("default")
        type(carol).objects.filter(pk=carol.pk).update(is_active=False)
        Session.objects.filter(session_key=dave_key)._raw_delete("default")

    await sync_to_async(end_rights_silently)()

    assert await closed_with(b, "forbidden") == 4403
    assert await closed_with(c, "unauthenticated") == 4401
    assert await closed_with(d, "unauthenticated") == 4401
    await still_open(a, "a1")
    await a.close()


async def test_a_ticket_opens_one_socket_once(servers, alice, private_room):
    """A ticket opens its room once; presented again (while the first socket is open, and
    after it closed) it gets `unauthenticated` and 4401, and the server logs the replay. A
    ticket for load generators (uses=2) opens two sockets, not three."""
    server = servers()
    origin = {"Origin": server.http_url}
    ticket = await sync_to_async(auth.ticket_issue)(user=alice, room=private_room.public_id)
    path = room_path(private_room) + f"?ticket={ticket}"
    async with websockets.connect(server.ws_url + path, additional_headers=origin) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        frames, code = await refused_socket(server, path, origin)
        only_error(frames, "unauthenticated")
        assert code == 4401
    frames, code = await refused_socket(server, path, origin)
    only_error(frames, "unauthenticated")
    assert code == 4401
    assert "spent ticket of user" in server.log()

    twice = await sync_to_async(auth.ticket_issue)(user=alice, room=private_room.public_id, uses=2)
    path = room_path(private_room) + f"?ticket={twice}"
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            ws = await stack.enter_async_context(
                websockets.connect(server.ws_url + path, additional_headers=origin)
            )
            assert json.loads(await ws.recv())["type"] == "hello"
        frames, code = await refused_socket(server, path, origin)
        only_error(frames, "unauthenticated")


async def test_a_ticket_issued_from_a_session_dies_with_it(servers, bob, shared_room):
    """A ticket bound to a session that was logged out (the session row is gone) opens
    nothing, even unused."""
    server = servers()
    _, key = await new_session(bob)
    ticket = await sync_to_async(auth.ticket_issue)(
        user=bob, room=shared_room.public_id, session_key=key
    )
    await sync_to_async(Session.objects.filter(session_key=key).delete)()
    frames, code = await refused_socket(
        server, room_path(shared_room) + f"?ticket={ticket}", {"Origin": server.http_url}
    )
    only_error(frames, "unauthenticated")
    assert code == 4401


async def test_one_user_may_open_so_many_sockets(servers, alice, bob, shared_room):
    """With SOCKETS_PER_USER 3, Alice's fourth socket gets `too_many_sockets` and 4029;
    Bob still joins; once Alice closes one, a new one of hers joins."""
    options = {"RATE_LIMITS": {"SOCKETS_PER_USER": 3}}
    server = servers({"PARLEY_TEST_OPTIONS": json.dumps(options)})
    peers = [await Peer.connect(server, shared_room, alice) for _ in range(3)]
    headers = {"Cookie": await sync_to_async(session_cookie)(alice), "Origin": server.http_url}
    frames, code = await refused_socket(server, room_path(shared_room), headers)
    only_error(frames, "too_many_sockets")
    assert code == 4029
    bobs = await Peer.connect(server, shared_room, bob)

    await peers.pop().close()

    async def joins() -> bool:
        async with websockets.connect(
            server.ws_url + room_path(shared_room), additional_headers=headers
        ) as ws:
            return json.loads(await ws.recv())["type"] == "hello"

    await until(joins)
    for peer in [*peers, bobs]:
        await peer.close()


async def test_a_revoked_socket_ignores_what_it_is_sent_after_the_close(
    settings, alice, bob, shared_room
):
    """In process, through the real ASGI stack, where a client can go on sending after the
    server's close (the test communicator does not stop it): Bob is removed while an answer
    streams; after his `forbidden` and 4403 the send, resume and cancel he sends get no reply,
    store nothing and stop nothing."""
    from example.asgi import application
    from parley.testing import RoomClient

    settings.PARLEY = {
        "BACKENDS": {
            "default": {
                "BACKEND": "parley.backends.scripted.ScriptedBackend",
                "OPTIONS": {"reply": "word ", "repeat": 100, "delay": 0.01},
            }
        },
        "STREAM_FLUSH_INTERVAL": 0.01,
    }
    a = await RoomClient.connect(application, shared_room, alice)
    b = await RoomClient.connect(application, shared_room, bob)
    await a.expect("hello")
    await b.expect("hello")
    await a.send(type="send", client_id="q1", text="talk a lot")
    await b.expect("delta")

    await sync_to_async(services.room_member_remove)(room=shared_room, user=bob, by=alice)
    error = await b.expect("error", timeout=10)
    assert error["code"] == "forbidden"
    assert await b.closed() == 4403
    for frame in AFTER_REVOCATION:
        await b.send(**frame)
    assert await b.communicator.receive_nothing(timeout=0.5)

    final = (await a.expect("done", timeout=20))["message"]
    assert final["status"] == "complete"
    assert await sync_to_async(authors_in)(shared_room) == {alice.pk, None}
    await a.disconnect()
    await b.disconnect()


def test_revocation_rules():
    """Which events end a grant: its room's membership, the user inactive, another auth
    hash, its own session's logout; not another room, the same hash or another session."""
    from parley.protocol import NOT_A_MEMBER, SIGNED_OUT
    from parley.realtime.access import Grant, digest, revocation

    grant = Grant(7, 3, "session-key", "hash")
    by_ticket = Grant(7, 3, None, "hash")
    assert revocation({"user": "7", "room": 3}, grant) == NOT_A_MEMBER
    assert revocation({"user": "7", "room": 4}, grant) is None
    assert revocation({"user": "7", "active": False}, grant) == SIGNED_OUT
    assert revocation({"user": "7", "active": True, "auth": digest("hash")}, grant) is None
    assert revocation({"user": "7", "active": True, "auth": digest("new")}, grant) == SIGNED_OUT
    assert revocation({"user": "7", "session": digest("session-key")}, grant) == SIGNED_OUT
    assert revocation({"user": "7", "session": digest("other")}, grant) is None
    assert revocation({"user": "7", "session": digest("session-key")}, by_ticket) is None


def test_who_may_remove_a_member(alice, bob, make_user, shared_room):
    """A member may leave and the owner may remove anyone but themselves; nobody else may
    remove a member."""
    from parley.exceptions import RoomPermissionDenied

    carol = make_user("carol")
    services.room_member_add(room=shared_room, by=alice, user=carol)
    with pytest.raises(RoomPermissionDenied):
        services.room_member_remove(room=shared_room, user=alice, by=alice)
    with pytest.raises(RoomPermissionDenied):
        services.room_member_remove(room=shared_room, user=carol, by=bob)
    assert services.room_member_remove(room=shared_room, user=bob, by=bob)
    assert services.room_member_remove(room=shared_room, user=carol, by=alice)
    assert not services.room_member_remove(room=shared_room, user=carol, by=alice)
    assert [m.user for m in shared_room.memberships.all()] == [alice]


def test_the_leave_button_takes_a_member_out(client, alice, bob, shared_room):
    """Bob sees "Leave room" in the shared room (its owner does not); pressing it (POST)
    takes him out, after which the room is a 404 to him. GET does nothing."""
    from django.urls import reverse

    room = reverse("parley:room", kwargs={"public_id": shared_room.public_id})
    leave = reverse("parley:leave", kwargs={"public_id": shared_room.public_id})
    client.force_login(alice)
    assert leave not in client.get(room).content.decode()
    client.force_login(bob)
    assert leave in client.get(room).content.decode()
    assert client.get(leave).status_code == 405
    response = client.post(leave)
    assert response.status_code == 302 and response["Location"] == reverse("parley:rooms")
    assert not Membership.objects.filter(room=shared_room, user=bob).exists()
    assert client.get(room).status_code == 404


async def test_the_room_list_socket_is_rechecked_and_counts_against_the_socket_cap(servers, alice):
    """A session deleted without a signal (clearsessions, an admin) ends the room list's
    socket at the next re-check; and it is one of the user's sockets for the cap."""
    options = {"RECHECK_INTERVAL": 0.2, "RATE_LIMITS": {"SOCKETS_PER_USER": 1}}
    server = servers({"PARLEY_TEST_OPTIONS": json.dumps(options)})
    cookie, key = await new_session(alice)
    ws = await inbox(server, cookie)
    second = await websockets.connect(
        f"{server.ws_url}/ws/inbox/",
        additional_headers={"Cookie": cookie, "Origin": server.http_url},
    )
    assert json.loads(await second.recv())["code"] == "too_many_sockets"
    await second.wait_closed()
    assert second.close_code == 4029
    await sync_to_async(Session.objects.filter(session_key=key).delete)()
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["code"] == "unauthenticated"
    await ws.wait_closed()
    assert ws.close_code == 4401
