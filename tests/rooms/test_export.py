"""A member exports a room: every message, in order, as a Markdown transcript or as JSON,
streamed a page at a time; anyone else gets 404."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from parley.models import Message, ToolRun

pytestmark = pytest.mark.django_db(transaction=True)


def fill(room, author, count: int) -> None:
    """``count`` messages: questions of ``author``'s and answers, the second answer with a
    tool call."""
    rows = []
    for seq in range(1, count + 1):
        answer = seq % 2 == 0
        rows.append(
            Message(
                room=room,
                seq=seq,
                role="assistant" if answer else "user",
                author=None if answer else author,
                text=f"<b>message {seq}</b>",
                model="m" if answer else "",
            )  # fmt: skip
        )
    Message.objects.bulk_create(rows)
    room.last_seq = count
    room.save(update_fields=["last_seq"])
    answer = Message.objects.get(room=room, seq=2)
    ToolRun.objects.create(
        answer=answer, room=room, asker=author, call_id="c", tool="pin",
        arguments='{"text": "x"}', round=1, position=0, status=ToolRun.Status.DONE,
    )  # fmt: skip


async def export(user, room, fmt: str):
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get(f"/rooms/{room.public_id}/export.{fmt}")
    body = b"".join([chunk async for chunk in response.streaming_content])
    return response, body.decode()


async def test_a_member_exports_every_message_in_order_as_json(shared_room, alice, bob):
    await database_sync_to_async(fill)(shared_room, alice, 1203)  # more than two pages
    response, body = await export(bob, shared_room, "json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    document = json.loads(body)
    assert document["room"]["id"] == shared_room.public_id
    messages = document["messages"]
    assert [m["seq"] for m in messages] == list(range(1, 1204))
    assert messages[0]["author"]["name"] == "alice" and messages[0]["text"] == "<b>message 1</b>"
    assert [step["tool"] for step in messages[1]["tools"]] == ["pin"]
    assert "html" not in messages[1]  # the text is the record


async def test_the_markdown_transcript_says_who_wrote_what(shared_room, alice):
    await database_sync_to_async(fill)(shared_room, alice, 2)
    response, body = await export(alice, shared_room, "md")
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert body.startswith("# Team\n")
    assert "## alice · " in body and "## Assistant (m) · " in body
    assert "> Tool `pin` (done)" in body
    assert body.index("message 1") < body.index("message 2")


async def test_no_one_else_exports_it(shared_room, make_user):
    carol = await database_sync_to_async(make_user)("carol")
    for fmt in ("md", "json"):
        client = AsyncClient()
        await client.aforce_login(carol)
        assert (await client.get(f"/rooms/{shared_room.public_id}/export.{fmt}")).status_code == 404
    anonymous = await AsyncClient().get(f"/rooms/{shared_room.public_id}/export.json")
    assert anonymous.status_code == 302  # to the login page
