"""Running a round of the model's tool calls as the asker: rights read when the call comes,
the shared-room rule, and every way a call can end, each stored for the audit."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission

from parley.backends import ToolCall
from parley.models import Message, Room, ToolRun
from parley.rooms import services
from parley.tools.calls import tools_run
from parley.tools.records import tool_runs_open
from tests.tools import sample

pytestmark = pytest.mark.django_db(transaction=True)

ALL = (
    sample.order_status,
    sample.audit_size,
    sample.my_rooms,
    sample.room_size,
    sample.guarded,
    sample.broken,
    sample.huge,
    sample.wait,
    sample.slow_write,
)


def grant(user, codename: str = "view_toolrun") -> None:
    user.user_permissions.add(Permission.objects.get(codename=codename))


def answer_to(room: Room, author) -> Message:
    """An answer of the room's, to a question of ``author``'s (``None``: a visitor's)."""
    seq = Message.objects.filter(room=room).count()
    question = Message.objects.create(room=room, seq=seq + 1, role="user", author=author, text="?")
    return Message.objects.create(
        room=room, seq=seq + 2, role="assistant", reply_to=question, text=""
    )


async def run(answer: Message, *calls: tuple[str, str], tools=ALL) -> list[ToolRun]:
    made = [
        ToolCall(id=f"call_{i}", name=name, arguments=args) for i, (name, args) in enumerate(calls)
    ]
    runs = await database_sync_to_async(tool_runs_open)(
        answer=answer, calls=made, round=1, text="Hello"
    )
    assert await tools_run(answer=answer, runs=runs, tools=tools)  # none waits for approval
    return runs


@database_sync_to_async
def rows() -> list[ToolRun]:
    return list(ToolRun.objects.order_by("pk"))


async def test_a_call_runs_as_the_asker_and_is_stored_for_the_audit(private_room, alice):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    [done] = await run(answer, ("order_status", '{"number": 12}'))
    assert done.status == ToolRun.Status.DONE
    assert done.result == '{"number": 12, "status": "shipped"}'
    assert sample.called == [("order_status", {"number": 12, "detail": "short"})]
    [row] = await rows()
    assert (row.tool, row.arguments, row.call_id, row.round, row.position) == (
        "order_status",
        '{"number": 12}',
        "call_0",
        1,
        5,
    )
    assert (
        row.asker_id == alice.pk and row.room_id == private_room.pk and row.answer_id == answer.pk
    )
    assert row.duration is not None and row.finished_at is not None


async def test_calls_run_in_their_order_and_each_gets_its_own_result(private_room, alice):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    runs = await run(
        answer,
        ("order_status", '{"number": 404}'),
        ("nonexistent", "{}"),
        ("order_status", '{"number": -1}'),
        ("broken", ""),
        ("order_status", '{"number": 2}'),
    )
    assert [r.status for r in runs] == ["failed", "invalid", "invalid", "failed", "done"]
    assert runs[0].result == "Error: There is no order numbered 404."
    assert runs[1].result == "There is no tool named 'nonexistent'."
    assert "greater than or equal to 1" in runs[2].result
    assert runs[3].result == "The tool broken failed."
    assert runs[3].error == "RuntimeError: disk on fire"  # for the audit, not the model
    assert [name for name, _ in sample.called] == ["order_status", "broken", "order_status"]


async def test_a_tool_that_raises_is_logged_with_its_traceback(private_room, alice, caplog):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    with caplog.at_level(logging.ERROR, logger="parley.tools.calls"):
        await run(answer, ("broken", "{}"))
    [record] = caplog.records
    assert "tool broken failed in answer" in record.getMessage() and record.exc_info


async def test_a_member_without_the_permission_is_refused_and_nothing_runs(private_room, alice):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    [refused] = await run(answer, ("audit_size", "{}"))
    assert refused.status == ToolRun.Status.REFUSED
    assert (
        refused.result == "The asker does not have permission to use the tool audit_size for this."
    )
    assert sample.called == []


async def test_rights_are_read_when_the_call_comes_not_before(private_room, alice):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    await database_sync_to_async(grant)(alice)
    assert [r.status for r in await run(answer, ("audit_size", "{}"))] == ["done"]
    assert sample.called == [("audit_size", {"user": "alice"})]
    await database_sync_to_async(alice.user_permissions.clear)()
    assert [r.status for r in await run(answer, ("audit_size", "{}"))] == ["refused"]


async def test_an_inactive_asker_runs_nothing_that_needs_rights(private_room, alice):
    await database_sync_to_async(grant)(alice)
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    assert [r.status for r in await run(answer, ("audit_size", "{}"))] == ["refused"]


async def test_in_a_shared_room_every_member_must_have_the_rights(shared_room, alice, bob):
    """Alice may read the audit and Bob may not: what the tool returns would reach Bob."""
    await database_sync_to_async(grant)(alice)
    answer = await database_sync_to_async(answer_to)(shared_room, alice)
    [refused] = await run(answer, ("audit_size", "{}"))
    assert refused.status == ToolRun.Status.REFUSED
    assert "not every member of this room may see what it returns" in refused.result
    assert sample.called == []

    await database_sync_to_async(grant)(bob)
    assert [r.status for r in await run(answer, ("audit_size", "{}"))] == ["done"]


async def test_a_personal_tool_is_refused_in_a_shared_room_and_runs_in_a_private_one(
    shared_room, private_room, alice
):
    shared = await database_sync_to_async(answer_to)(shared_room, alice)
    [refused] = await run(shared, ("my_rooms", "{}"))
    assert refused.status == ToolRun.Status.REFUSED
    assert "personal to the asker" in refused.result
    private = await database_sync_to_async(answer_to)(private_room, alice)
    [done] = await run(private, ("my_rooms", "{}"))
    assert done.status == ToolRun.Status.DONE and done.result == '["Notes", "Team"]'


async def test_a_personal_tool_is_refused_in_a_shared_room_even_with_no_one_else_in_it(alice):
    """An invitee who accepts later reads the room's whole history, the result included."""
    alone = await database_sync_to_async(services.room_create)(
        owner=alice, title="Trip", kind="shared"
    )
    answer = await database_sync_to_async(answer_to)(alone, alice)
    [refused] = await run(answer, ("my_rooms", "{}"))
    assert refused.status == ToolRun.Status.REFUSED and sample.called == []


async def test_a_deactivated_asker_runs_nothing_not_even_a_tool_that_needs_no_permission(
    private_room, alice
):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    await database_sync_to_async(type(alice).objects.filter(pk=alice.pk).update)(is_active=False)
    [refused] = await run(answer, ("order_status", '{"number": 1}'))
    assert refused.result == "The asker's account is no longer active."
    assert sample.called == []


async def test_an_asker_who_left_the_shared_room_runs_nothing(shared_room, alice, bob):
    answer = await database_sync_to_async(answer_to)(shared_room, bob)
    await database_sync_to_async(services.room_member_remove)(room=shared_room, user=bob, by=alice)
    [refused] = await run(answer, ("order_status", '{"number": 1}'))
    assert refused.result == "The asker is no longer a member of this room."
    assert sample.called == []


async def test_an_object_level_check_sees_the_validated_arguments(private_room, alice, bob):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    runs = await run(
        answer, ("room_size", '{"title": "Notes"}'), ("room_size", '{"title": "Other"}')
    )
    assert [r.status for r in runs] == ["done", "refused"]
    theirs = await database_sync_to_async(answer_to)(
        await database_sync_to_async(services.room_create)(
            owner=bob, title="Bob's", kind="private"
        ),
        bob,
    )
    assert [r.status for r in await run(theirs, ("room_size", '{"title": "Notes"}'))] == ["refused"]


async def test_a_check_that_fails_refuses_and_is_logged(private_room, alice, caplog):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    with caplog.at_level(logging.ERROR, logger="parley.tools.access"):
        assert [r.status for r in await run(answer, ("guarded", "{}"))] == ["refused"]
    assert "permission check of tool guarded failed" in caplog.text
    assert sample.called == []


async def test_a_visitor_runs_only_tools_that_need_no_rights(private_room, alice):
    answer = await database_sync_to_async(answer_to)(private_room, None)
    runs = await run(
        answer,
        ("order_status", '{"number": 1}'),
        ("audit_size", "{}"),
        ("room_size", '{"title": "Notes"}'),
    )
    assert [r.status for r in runs] == ["done", "refused", "refused"]
    assert runs[0].asker_id is None


async def test_a_long_result_is_cut_and_says_so(private_room, alice, settings):
    settings.PARLEY = {"TOOLS": {"MAX_RESULT_CHARS": 100}}
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    [done] = await run(answer, ("huge", "{}"))
    assert len(done.result) == 100
    assert done.result.endswith("… [cut: 99900 more characters]")


async def test_calls_past_the_limit_of_a_round_are_not_run(private_room, alice, settings):
    settings.PARLEY = {"TOOLS": {"MAX_CALLS_PER_ROUND": 2}}
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    runs = await run(answer, *[("order_status", f'{{"number": {n}}}') for n in (1, 2, 3)])
    assert [r.status for r in runs] == ["done", "done", "invalid"]
    assert runs[2].result == "Not run: at most 2 tool calls are run at a time."
    assert len(sample.called) == 2


async def test_an_async_tool_past_its_timeout_is_cancelled(private_room, alice, settings):
    settings.PARLEY = {"TOOLS": {"TIMEOUT": 0.2}}
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    [failed] = await run(answer, ("wait", '{"seconds": 30}'))
    assert failed.status == ToolRun.Status.FAILED
    assert failed.result == "The tool wait did not finish within 0.2 seconds."


async def test_stopping_the_answer_cancels_an_async_tool(private_room, alice):
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    task = asyncio.create_task(
        run(answer, ("wait", '{"seconds": 30}'), ("order_status", '{"number": 1}'))
    )
    while not sample.called:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row, second = await rows()
    assert row.status == ToolRun.Status.CANCELLED and row.finished_at is not None
    assert second.status == ToolRun.Status.QUEUED  # never started: the answer closes it
    assert [name for name, _ in sample.called] == ["wait"]


async def test_a_sync_tool_is_not_killed_by_a_stop_it_finishes_and_says_so(private_room, alice):
    """Python cannot stop a thread safely: the write the tool is making completes, and its
    row records that it did, after the answer has stopped."""
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    task = asyncio.create_task(run(answer, ("slow_write", '{"title": "Renamed"}')))
    while not sample.called:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await rows())[0].status == ToolRun.Status.RUNNING
    sample.release.set()
    row = await finished()
    assert row.status == ToolRun.Status.DONE and row.result == "renamed"
    await database_sync_to_async(private_room.refresh_from_db)()
    assert private_room.title == "Renamed"


async def test_a_sync_tool_past_its_timeout_is_left_to_finish(private_room, alice, settings):
    settings.PARLEY = {"TOOLS": {"TIMEOUT": 0.2}}
    answer = await database_sync_to_async(answer_to)(private_room, alice)
    [running] = await run(answer, ("slow_write", '{"title": "Later"}'))
    assert running.result == (
        "The tool slow_write did not finish within 0.2 seconds; whether it did what was "
        "asked is not known yet."
    )
    assert running.status == ToolRun.Status.RUNNING
    sample.release.set()
    assert (await finished()).status == ToolRun.Status.DONE  # its thread stores the end


async def finished() -> ToolRun:
    """The one row, once its tool's thread has stored how the call ended."""
    for _ in range(200):
        [row] = await rows()
        if row.status != ToolRun.Status.RUNNING:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError("the tool's thread never stored its end")
