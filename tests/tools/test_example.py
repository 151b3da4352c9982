"""The example project's tools, over its own rooms, as the assistant calls them."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from example import tools
from parley.backends import ToolCall
from parley.models import Invitation, Message, Room, ToolRun
from parley.rooms import services
from parley.tools.approvals import Decision, approval_decide
from parley.tools.calls import tools_run
from parley.tools.records import tool_runs_open
from tests.test_checks import example_python
from tests.tools.test_calls import answer_to, run

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLE = (tools.my_rooms, tools.search_messages, tools.create_room)


@database_sync_to_async
def post(room, author, text: str) -> None:
    seq = Message.objects.filter(room=room).count() + 1
    Message.objects.create(room=room, seq=seq, role="user", author=author, text=text)


async def test_my_rooms_lists_the_askers_rooms_only(private_room, shared_room, alice, bob):
    await database_sync_to_async(services.room_create)(owner=bob, title="Bob's", kind="private")
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    [done] = await run(answer, ("my_rooms", "{}"), tools=EXAMPLE)
    listed = json.loads(done.result)
    assert {(room["title"], room["kind"], room["members"]) for room in listed} == {
        ("Notes", "private", 1),
        ("Team", "shared", 2),
    }


async def test_search_reads_only_the_rooms_the_asker_is_in(private_room, alice, bob):
    theirs = await database_sync_to_async(services.room_create)(
        owner=bob, title="Bob's", kind="private"
    )
    await post(private_room, alice, "The invoice is due on Friday.")
    await post(theirs, bob, "My invoice is secret.")
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    [done] = await run(answer, ("search_messages", '{"words": "INVOICE"}'), tools=EXAMPLE)
    found = json.loads(done.result)
    assert [(m["room"], m["author"], m["text"]) for m in found] == [
        ("Notes", "alice", "The invoice is due on Friday.")
    ]


async def test_search_arguments_are_bounded(private_room, alice):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    runs = await run(
        answer,
        ("search_messages", '{"words": "a"}'),
        ("search_messages", '{"words": "invoice", "limit": 500}'),
        tools=EXAMPLE,
    )
    assert [r.status for r in runs] == ["invalid", "invalid"]


async def test_both_are_personal_refused_in_a_shared_room(shared_room, alice):
    answer = await database_sync_to_async(answer_to)(shared_room, alice)
    runs = await run(
        answer, ("my_rooms", "{}"), ("search_messages", '{"words": "hi"}'), tools=EXAMPLE
    )
    assert [r.status for r in runs] == ["refused", "refused"]


async def test_a_visitor_is_told_it_has_no_rooms(private_room):
    answer = await database_sync_to_async(answer_to)(private_room, None)
    [failed] = await run(answer, ("my_rooms", "{}"), tools=EXAMPLE)
    assert failed.result.startswith("Error: Only a signed-in member has rooms")


def test_the_example_offers_them_with_the_openai_backend_only():
    code = (
        "from parley.tools.registry import tools_for; print([t.name for t in tools_for('default')])"
    )
    env = {"DEBUG": "true", "SECRET_KEY": "test-only-" + "k" * 40}
    assert example_python({**env, "PARLEY_BACKEND": "openai"}, code) == (
        0,
        "['my_rooms', 'search_messages', 'create_room']\n",
    )
    assert example_python({**env, "PARLEY_BACKEND": "offline"}, code) == (0, "[]\n")


async def test_create_room_waits_for_approval_then_creates_and_invites(private_room, alice, bob):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    await database_sync_to_async(Message.objects.filter(pk=answer.pk).update)(status="streaming")
    arguments = '{"title": "Trip", "invite": ["bob", "nobody"]}'
    runs = await database_sync_to_async(tool_runs_open)(
        answer=answer, calls=[ToolCall("c0", "create_room", arguments)], round=1, text=""
    )
    assert not await tools_run(answer=answer, runs=runs, tools=EXAMPLE)  # it waits
    assert runs[0].status == ToolRun.Status.PENDING
    assert not await database_sync_to_async(Room.objects.filter(title="Trip").exists)()

    approved = await database_sync_to_async(approval_decide)(
        run_id=runs[0].pk, room_id=private_room.pk, user=alice, decision=Decision(True), worker="w"
    )
    assert await tools_run(answer=answer, runs=[approved], tools=EXAMPLE)
    assert approved.status == ToolRun.Status.DONE
    assert approved.result == "Created the shared room 'Trip'; invitations went to bob, nobody."
    room = await database_sync_to_async(Room.objects.get)(title="Trip")
    assert (room.kind, room.owner_id) == ("shared", alice.pk)
    invited = Invitation.objects.filter(room=room).values_list("invitee__username", flat=True)
    assert await database_sync_to_async(list)(invited) == ["bob"]
