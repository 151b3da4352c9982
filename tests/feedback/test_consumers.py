"""Feedback through the real ASGI stack (Origin check, session or ticket auth, router,
handlers): given, changed, taken back, refused; personal in a shared room; back after a
reconnect; a visitor's on its own conversation."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from example.asgi import application
from parley import protocol
from parley.models import Feedback, Message, Visitor
from parley.realtime.auth import ticket_issue
from parley.realtime.routing import socket_path
from parley.testing import RoomClient
from parley.visitors import services as visitor_services
from tests.feedback.conftest import FERRY, QUESTION

pytestmark = [pytest.mark.django_db(transaction=True)]


async def joined(connect, room, user) -> RoomClient:
    client = await connect(room, user)
    assert client.connected
    await client.expect("hello")
    await client.send(type="resume", after=0)  # as the browser does after hello
    await client.expect("history")
    return client


async def asked(client: RoomClient, text: str = QUESTION) -> dict:
    """``client`` asks; returns the finished answer."""
    await client.send(type="send", client_id="q1", text=text)
    return (await client.expect("done", timeout=15))["message"]


async def rate(client: RoomClient, answer_id: int, rating, comment: str = "") -> dict:
    await client.send(type="rate", message_id=answer_id, rating=rating, comment=comment)
    return await client.receive()


async def test_a_member_rates_changes_their_mind_and_takes_it_back(
    offline, connect, alice, private_room
):
    client = await joined(connect, private_room, alice)
    answer = await asked(client)
    assert FERRY in answer["text"]

    reply = await rate(client, answer["id"], "down", "It should say which pier.")
    assert reply == {
        "type": "feedback", "message_id": answer["id"],
        "feedback": {"rating": "down", "comment": "It should say which pier."},
    }  # fmt: skip
    row = await Feedback.objects.select_related("answer").aget()
    assert (row.user_id, row.visitor_id, row.rating) == (alice.pk, None, "down")
    assert row.question == QUESTION and row.answer_text == answer["text"]
    assert row.backend == "default" and row.model == answer.get("model", "")
    # The source the answer was given, kept on the answer and copied onto the feedback.
    assert row.sources == row.answer.sources
    assert [s["document"] for s in row.sources] == ["files:kb/travel.md"]
    assert row.sources[0]["title"].endswith("The ferry")

    reply = await rate(client, answer["id"], "up")
    assert reply["feedback"] == {"rating": "up", "comment": ""}
    assert await Feedback.objects.acount() == 1  # changed in place: one per answer and person
    assert (await Feedback.objects.aget()).rating == "up"

    reply = await rate(client, answer["id"], None)
    assert reply["feedback"] is None
    assert not await Feedback.objects.aexists()


async def test_bad_feedback_gets_a_clear_error_and_stores_nothing(
    offline, connect, alice, private_room, shared_room
):
    client = await joined(connect, private_room, alice)
    answer = await asked(client)
    question = await Message.objects.aget(room=private_room, role="user")
    too_long = "x" * (protocol.MAX_COMMENT_CHARS + 1)
    cases = [
        ({"message_id": answer["id"], "rating": "up", "comment": too_long}, "comment_too_long"),
        ({"message_id": answer["id"], "rating": "sideways"}, "bad_frame"),
        ({"message_id": question.pk, "rating": "up"}, "not_rateable"),  # a question
        ({"message_id": 10**9, "rating": "up"}, "not_rateable"),
    ]
    for fields, code in cases:
        await client.send(type="rate", **fields)
        error = await client.expect("error")
        assert error["code"] == code, error
        assert error["detail"]
    # An answer of another room, even one alice is a member of, is not this socket's.
    other = await joined(connect, shared_room, alice)
    other_answer = await asked(other)
    await client.send(type="rate", message_id=other_answer["id"], rating="up")
    error = await client.expect("error")
    assert (error["code"], error["message_id"]) == ("not_rateable", other_answer["id"])
    assert not await Feedback.objects.aexists()


async def test_a_streaming_answer_cannot_be_rated(backend, connect, alice, private_room):
    backend(reply="word ", repeat=300, delay=0.01)
    client = await joined(connect, private_room, alice)
    await client.send(type="send", client_id="q1", text="talk")
    started = await client.expect("message", timeout=5)
    while started["message"]["role"] != "assistant":
        started = await client.expect("message", timeout=5)
    await client.send(type="rate", message_id=started["message"]["id"], rating="up")
    assert (await client.expect("error"))["code"] == "not_rateable"
    await client.send(type="cancel")
    await client.expect("done", timeout=10)


async def test_a_non_member_is_refused_before_any_frame(offline, connect, bob, private_room):
    client = await connect(private_room, bob)
    error = await client.expect("error")
    assert error["code"] == "forbidden"
    assert await client.closed() == protocol.CLOSE_FORBIDDEN


async def test_in_a_shared_room_feedback_is_personal_and_comes_back_after_a_reconnect(
    offline, connect, alice, bob, shared_room
):
    a = await joined(connect, shared_room, alice)
    b = await joined(connect, shared_room, bob)
    answer = await asked(a)
    await b.expect("done", timeout=15)

    assert (await rate(a, answer["id"], "down", "Too short."))["type"] == "feedback"
    assert (await rate(b, answer["id"], "up"))["feedback"]["rating"] == "up"
    # Each was told of their own only: no frame about the other's reached them (a resume
    # answered last: whatever the other's rating sent them would have come before it).
    for client, own in ((a, "down"), (b, "up")):
        await client.send(type="resume", after=10**6)
        await client.expect("history")
        told = [f["feedback"]["rating"] for f in client.frames if f["type"] == "feedback"]
        assert told == [own]
    assert await Feedback.objects.acount() == 2

    await a.disconnect()
    again = await connect(shared_room, alice)
    await again.expect("hello")
    await again.send(type="resume", after=0)
    question, listed = (await again.expect("history"))["messages"]
    assert listed["id"] == answer["id"]
    assert listed["feedback"] == {"rating": "down", "comment": "Too short."}
    assert "feedback" not in question


async def test_a_visitor_rates_answers_of_its_own_conversation(offline, alice):
    visitor = await Visitor.objects.acreate()
    room = await sync_to_async(visitor_services.conversation_for_visitor)(visitor=visitor)
    ticket = await sync_to_async(ticket_issue)(visitor=visitor, room=room.public_id)
    client = await RoomClient.connect(
        application, room, path=f"{socket_path(room.public_id)}?ticket={ticket}"
    )
    try:
        await client.expect("hello")
        answer = await asked(client)
        reply = await rate(client, answer["id"], "up", "Exactly what I needed.")
        assert reply["feedback"] == {"rating": "up", "comment": "Exactly what I needed."}
    finally:
        await client.disconnect()
    row = await Feedback.objects.aget()
    assert (row.visitor_id, row.user_id) == (visitor.pk, None)
    assert FERRY in row.answer_text and row.sources[0]["document"] == "files:kb/travel.md"

    # Logging in carries the conversation over to the account, and its feedback with it.
    await sync_to_async(visitor_services.visitor_carry_over)(visitor=visitor, user=alice)
    row = await Feedback.objects.aget()
    assert (row.visitor_id, row.user_id) == (None, alice.pk)


async def test_feedback_past_its_rate_limit_is_refused_and_can_be_sent_again(
    offline, connect, alice, private_room
):
    offline.PARLEY = {**offline.PARLEY, "RATE_LIMITS": {"FEEDBACK": (0.001, 2)}}
    client = await joined(connect, private_room, alice)
    answer = await asked(client)
    for rating in ("up", "down"):
        assert (await rate(client, answer["id"], rating))["type"] == "feedback"
    refused = await rate(client, answer["id"], "up")
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    assert refused["message_id"] == answer["id"] and refused["retry_after"] > 0
    assert (await Feedback.objects.aget()).rating == "down"  # the refused one changed nothing
