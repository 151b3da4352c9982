"""A visitor's socket: its own conversation only, its limits, and the end of it on login."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from example.asgi import application
from parley.models import Message, Room, Visitor
from parley.realtime.auth import ticket_issue
from parley.realtime.routing import socket_path
from parley.testing import RoomClient
from parley.visitors import services

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def visitors(settings):
    def configure(**visitor_options):
        settings.PARLEY = {
            "BACKENDS": {"default": {"BACKEND": "parley.backends.scripted.ScriptedBackend",
                                     "OPTIONS": {"reply": "Echo: {question}"}}},
            "VISITORS": {"ENABLED": True, **visitor_options},
        }  # fmt: skip

    configure()
    return configure


@pytest.fixture
async def visitor_socket():
    clients: list[RoomClient] = []

    async def open_(visitor: Visitor, room: Room, *, ticket_room: str | None = "same"):
        ticket = await sync_to_async(ticket_issue)(
            visitor=visitor, room=room.public_id if ticket_room == "same" else ticket_room
        )
        path = f"{socket_path(room.public_id)}?ticket={ticket}"
        client = await RoomClient.connect(application, room, path=path)
        clients.append(client)
        return client

    yield open_
    for client in clients:
        await client.disconnect()


async def a_visitor() -> tuple[Visitor, Room]:
    visitor = await Visitor.objects.acreate()
    room = await sync_to_async(services.conversation_for_visitor)(visitor=visitor)
    return visitor, room


async def test_a_visitor_asks_and_the_answer_streams_with_its_message_stored_once(
    visitors, visitor_socket
):
    visitor, room = await a_visitor()
    client = await visitor_socket(visitor, room)
    hello = await client.expect("hello")
    assert hello["user"] == {"id": None, "name": "You", "visitor": True}
    await client.send(type="send", client_id="q1", text="hello there")
    ack = await client.expect("ack")
    assert ack["message"]["author"] is None and not ack["duplicate"]
    done = await client.expect("done")
    assert done["message"]["text"] == "Echo: hello there"

    await client.send(type="send", client_id="q1", text="hello there")  # a resend
    assert (await client.expect("ack"))["duplicate"] is True
    assert await Message.objects.filter(room=room, role="user").acount() == 1


async def test_a_visitor_reaches_no_room_but_its_own(visitors, visitor_socket, private_room):
    visitor, own = await a_visitor()
    _, others = await a_visitor()
    for target, ticket_room in ((private_room, None), (others, None), (private_room, "same")):
        client = await visitor_socket(visitor, target, ticket_room=ticket_room)
        assert (await client.expect("error"))["code"] == "forbidden"
        assert await client.closed() == 4403
    assert await Message.objects.acount() == 0


async def test_the_daily_quota_refuses_with_a_clear_error_and_stores_nothing(
    visitors, visitor_socket
):
    visitors(DAILY_MESSAGES=2)
    visitor, room = await a_visitor()
    client = await visitor_socket(visitor, room)
    await client.expect("hello")
    for n in (1, 2):
        await client.send(type="send", client_id=f"m{n}", text=f"message {n}")
        assert (await client.expect("ack", client_id=f"m{n}"))["duplicate"] is False
        await client.expect("done")
    await client.send(type="send", client_id="m3", text="one too many")
    error = await client.expect("error")
    assert error["code"] == "quota_exceeded" and error["client_id"] == "m3"
    assert "2 messages" in error["detail"]
    assert await Message.objects.filter(room=room, role="user").acount() == 2
    await client.send(type="send", client_id="m2", text="message 2")  # a resend: its ack
    assert (await client.expect("ack", client_id="m2"))["duplicate"] is True


async def test_logging_in_carries_the_conversation_over_and_closes_the_visitors_socket(
    visitors, visitor_socket, alice
):
    visitor, room = await a_visitor()
    client = await visitor_socket(visitor, room)
    await client.expect("hello")
    await client.send(type="send", client_id="q1", text="before logging in")
    await client.expect("done")

    await sync_to_async(services.visitor_carry_over)(visitor=visitor, user=alice)
    assert (await client.expect("error"))["code"] == "unauthenticated"
    assert await client.closed() == 4401
    await room.arefresh_from_db()
    assert room.owner_id == alice.pk and room.visitor_id is None
    question = await Message.objects.aget(room=room, role="user")
    assert question.author_id == alice.pk
    # Its tickets open nothing any more: the visitor is done.
    again = await visitor_socket(visitor, room)
    assert await again.closed() == 4401


async def test_turning_visitors_off_ends_their_tickets(visitors, visitor_socket, settings):
    visitor, room = await a_visitor()
    settings.PARLEY = {"VISITORS": {"ENABLED": False}}
    client = await visitor_socket(visitor, room)
    assert await client.closed() == 4401


async def test_pages_of_an_embedding_site_open_sockets_as_visitors_only(
    visitors, settings, visitor_socket, alice, private_room
):
    """EMBED_ORIGINS lets another site's pages embed the chat: a visitor's ticket opens its
    socket from there; alice's session cookie (or her ticket) does not."""
    settings.PARLEY = {**settings.PARLEY, "EMBED_ORIGINS": ["https://shop.example"]}
    shop = {"origin": "https://shop.example"}
    as_alice = await RoomClient.connect(application, private_room, alice, **shop)
    assert (await as_alice.expect("error"))["code"] == "unauthenticated"
    assert await as_alice.closed() == 4401
    ticket = await sync_to_async(ticket_issue)(user=alice, room=private_room.public_id)
    path = f"{socket_path(private_room.public_id)}?ticket={ticket}"
    with_ticket = await RoomClient.connect(application, private_room, path=path, **shop)
    assert await with_ticket.closed() == 4401

    visitor, room = await a_visitor()
    ticket = await sync_to_async(ticket_issue)(visitor=visitor, room=room.public_id)
    path = f"{socket_path(room.public_id)}?ticket={ticket}"
    client = await RoomClient.connect(application, room, path=path, **shop)
    assert (await client.expect("hello"))["user"]["visitor"] is True
    await client.disconnect()
    unlisted = await RoomClient.connect(
        application, private_room, alice, origin="https://evil.example"
    )
    assert not unlisted.connected  # refused at the handshake


async def test_an_expired_visitors_open_socket_is_closed_at_once(visitors, visitor_socket):
    visitor, room = await a_visitor()
    client = await visitor_socket(visitor, room)
    await client.expect("hello")
    await Visitor.objects.filter(pk=visitor.pk).aupdate(
        last_seen_at=timezone.now() - timedelta(days=60)
    )
    assert await sync_to_async(services.visitors_expire)() == 1
    assert (await client.expect("error"))["code"] == "unauthenticated"
    assert await client.closed() == 4401
