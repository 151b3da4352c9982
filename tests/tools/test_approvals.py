"""Calls of tools that change something wait for approval, as rows: the answer pauses
with no task waiting, and goes on when the asker (or an approver) decides, when the wait
expires, or ends when a member presses stop. Through a member's real socket, the runner
and the real ``openai`` client against the fake model server."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import override_settings

from example.asgi import application
from parley import answers, protocol
from parley.answers.runner import Answer, answer_start
from parley.backends import ToolCall, get_backend
from parley.models import Message, Room, ToolGrant, ToolRun
from parley.testing import RoomClient
from parley.tools.approvals import Decision, DecisionRefused, approval_decide
from parley.tools.calls import tools_run
from parley.tools.records import tool_runs_open
from tests.answers.test_answers import frames_until, of_type
from tests.openai_server import Script
from tests.tools import sample
from tests.tools.test_calls import answer_to

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = ("order_status", "rename_room", "pin")


@pytest.fixture
def offered(settings, fake_openai):
    """The default backend, on the fake model server, offers the sample tools."""

    def offer(**tools: Any) -> None:
        settings.PARLEY = {
            "BACKENDS": {"default": sample.offering(fake_openai.base_url, *TOOLS)},
            "STREAM_FLUSH_INTERVAL": 0.01,
            "TOOLS": tools,
        }

    offer()
    return offer


@pytest.fixture
async def connect(offered):
    clients: list[RoomClient] = []

    async def connect(room: Room, user: Any) -> RoomClient:
        client = await RoomClient.connect(application, room, user)
        assert (await client.receive())["type"] == "hello"
        clients.append(client)
        return client

    yield connect
    await answers.answers_shutdown()
    for client in clients:
        await client.disconnect()
    await get_backend().aclose()


async def pause(client: RoomClient, fake_openai, *calls: tuple[str, str]) -> dict[str, Any]:
    """Ask a question the model answers by calling ``calls``; the step that waits."""
    fake_openai.enqueue(Script(tokens=["Let me do that."], tool_calls=list(calls)))
    start = len(client.frames)
    await client.send(type="send", client_id="q1", text="Please rename my room")
    return await waiting_step(client, start=start)


async def waiting_step(client: RoomClient, *, start: int) -> dict[str, Any]:
    """The first step from frame ``start`` on that waits for approval."""
    while True:
        _, frame = await frames_until(client, "tool", start=start)
        if frame["step"]["status"] == ToolRun.Status.PENDING:
            return frame["step"]
        start = len(client.frames)


@database_sync_to_async
def row(pk: int) -> ToolRun:
    return ToolRun.objects.select_related("decided_by", "answer").get(pk=pk)


RENAME = ("rename_room", '{"title": "Notes", "new_title": "Plans"}')


async def test_a_call_that_changes_something_waits_and_runs_once_the_asker_approves(
    connect, fake_openai, private_room, alice
):
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME)
    assert step["tool"] == "rename_room" and "expires_at" in step
    assert step["asker"] == alice.pk
    assert sample.called == [] and len(fake_openai.exchanges) == 1
    waiting = await row(step["id"])
    assert waiting.answer.status == Message.Status.STREAMING  # paused, not finished
    assert answers.answers_running() == []  # and nothing runs it: it is a row

    fake_openai.enqueue(Script(tokens=["Done: it is called Plans now."]))
    start = len(member.frames)
    await member.send(type="decide", step=step["id"], approve=True)
    frames, done = await frames_until(member, "done", start=start)

    text = "Let me do that.\n\nDone: it is called Plans now."
    assert done["message"]["status"] == "complete" and done["message"]["text"] == text
    deltas = [f for f in of_type(frames, "delta") if f["message_id"] == done["message"]["id"]]
    assert deltas[0]["offset"] == len("Let me do that.")  # goes on from what members have
    assert "".join(f["text"] for f in deltas) == "\n\nDone: it is called Plans now."
    assert [s["status"] for s in (f["step"] for f in of_type(frames, "tool"))] == [
        "approved",
        "done",
    ]
    assert [s["status"] for s in done["message"]["tools"]] == ["done"]
    assert sample.called == [("rename_room", {"title": "Notes", "new_title": "Plans"})]
    assert await database_sync_to_async(Room.objects.filter(title="Plans").count)() == 1
    told = fake_openai.exchanges[1].body["messages"]
    assert told[-2]["tool_calls"][0]["function"]["name"] == "rename_room"
    assert told[-1]["content"] == "Renamed 'Notes' to 'Plans'."
    audit = await row(step["id"])
    assert audit.status == ToolRun.Status.DONE
    assert audit.decided_by == alice and audit.decided_at is not None and not audit.by_grant


async def test_a_denied_call_is_not_run_and_the_model_is_told(
    connect, fake_openai, private_room, alice
):
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME)
    fake_openai.enqueue(Script(tokens=["Alright, I left it."]))
    start = len(member.frames)
    await member.send(type="decide", step=step["id"], approve=False)
    _, done = await frames_until(member, "done", start=start)
    assert done["message"]["text"].endswith("Alright, I left it.")
    assert sample.called == []
    told = fake_openai.exchanges[1].body["messages"][-1]["content"]
    assert told == "alice denied this call: it was not run."
    assert (await row(step["id"])).status == ToolRun.Status.DENIED


async def test_the_asker_may_edit_the_arguments_and_the_model_hears_of_it(
    connect, fake_openai, private_room, alice
):
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME)
    await member.send(
        type="decide", step=step["id"], approve=True, arguments={"title": "Notes", "new_title": ""}
    )
    refused = await member.expect("error")
    assert refused["code"] == "bad_arguments" and refused["step"] == step["id"]
    assert "new_title" in refused["detail"]
    assert (await row(step["id"])).status == ToolRun.Status.PENDING  # still waiting

    fake_openai.enqueue(Script(tokens=["Renamed."]))
    start = len(member.frames)
    edited = {"title": "Notes", "new_title": "Ideas"}
    await member.send(type="decide", step=step["id"], approve=True, arguments=edited)
    _, done = await frames_until(member, "done", start=start)
    assert sample.called == [("rename_room", edited)]
    [shown] = done["message"]["tools"]
    assert shown["arguments"] == RENAME[1]  # what the model asked, for the record
    assert shown["approved_arguments"] == '{"title": "Notes", "new_title": "Ideas"}'
    told = fake_openai.exchanges[1].body["messages"][-1]["content"]
    assert told.startswith('The approver changed the arguments; it ran with {"title": "Notes"')


async def test_always_allow_runs_the_askers_later_calls_of_that_tool_without_asking(
    connect, fake_openai, private_room, alice
):
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, ("pin", '{"text": "one"}'))
    fake_openai.enqueue(Script(tokens=["Pinned."]))
    start = len(member.frames)
    await member.send(type="decide", step=step["id"], approve=True, always=True)
    await frames_until(member, "done", start=start)
    assert await database_sync_to_async(ToolGrant.objects.filter(user=alice, tool="pin").count)()

    fake_openai.enqueue(
        Script(tokens=[], tool_calls=[("pin", '{"text": "two"}'), RENAME]),
    )
    start = len(member.frames)
    await member.send(type="send", client_id="q2", text="Pin two, and rename")
    await waiting_step(member, start=start)
    # pin ran at once; rename_room, never always allowed, waits.
    assert [name for name, _ in sample.called] == ["pin", "pin"]
    steps = [f["step"] for f in of_type(member.frames[start:], "tool")]
    assert [(s["tool"], s["status"]) for s in steps][:2] == [
        ("pin", "done"),
        ("rename_room", "pending"),
    ]
    assert steps[0]["always"] is True and steps[0]["decided_by"] == "alice"


async def test_a_stop_while_waiting_ends_the_answer_and_the_call_never_runs(
    connect, fake_openai, private_room, alice
):
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME, ("pin", '{"text": "after"}'))
    start = len(member.frames)
    await member.send(type="cancel")
    frames, done = await frames_until(member, "done", start=start)
    assert done["message"]["status"] == Message.Status.CANCELLED
    assert done["message"]["text"] == "Let me do that."
    assert [s["status"] for s in done["message"]["tools"]] == ["cancelled", "cancelled"]
    await member.send(type="decide", step=step["id"], approve=True)
    assert (await member.expect("error"))["code"] == "not_pending"
    assert sample.called == [] and len(fake_openai.exchanges) == 1

    # The room is free again: the next question is answered.
    fake_openai.enqueue(Script(tokens=["Hi."]))
    start = len(member.frames)
    await member.send(type="send", client_id="q2", text="Hello")
    _, done = await frames_until(member, "done", start=start)
    assert done["message"]["text"] == "Hi."


async def test_an_expired_wait_is_denied_and_the_answer_goes_on(
    connect, offered, fake_openai, private_room, alice
):
    offered(APPROVAL_TIMEOUT=0.05)
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME)
    assert (await row(step["id"])).status == ToolRun.Status.PENDING
    await database_sync_to_async(ToolRun.objects.filter(pk=step["id"]).update)(
        expires_at=(await row(step["id"])).created_at
    )  # as if its time had passed
    fake_openai.enqueue(Script(tokens=["No one approved it, so I did not rename it."]))
    start = len(member.frames)
    await answers.approvals_expire_due()  # what every process's watch runs
    frames, done = await frames_until(member, "done", start=start)
    assert done["message"]["status"] == "complete"
    assert [f["step"]["status"] for f in of_type(frames, "tool")] == ["expired"]
    told = fake_openai.exchanges[1].body["messages"][-1]["content"]
    assert told == "No one approved this call within 0.05 seconds: it was not run."
    assert sample.called == []
    await member.send(type="decide", step=step["id"], approve=True)
    assert (await member.expect("error"))["code"] == "not_pending"


async def test_the_wait_outlives_the_socket_and_the_process_that_asked(
    connect, fake_openai, private_room, alice
):
    """The asker's tab closes and the server stops while the call waits; a new socket
    sees the waiting step in the history and approves it."""
    first = await connect(private_room, alice)
    step = await pause(first, fake_openai, RENAME)
    await first.disconnect()
    await answers.answers_shutdown()  # nothing was running: the answer is only rows
    await answers.answers_interrupt_stale()  # and it is not taken for a dead process's
    again = await connect(private_room, alice)
    await again.send(type="resume", after=0)
    history = await again.expect("history")
    answer = next(m for m in history["messages"] if m["role"] == "assistant")
    assert answer["status"] == "streaming" and answer["text"] == "Let me do that."
    assert [(s["id"], s["status"]) for s in answer["tools"]] == [(step["id"], "pending")]

    fake_openai.enqueue(Script(tokens=["Renamed."]))
    start = len(again.frames)
    await again.send(type="decide", step=step["id"], approve=True)
    _, done = await frames_until(again, "done", start=start)
    assert done["message"]["text"] == "Let me do that.\n\nRenamed."


async def test_a_waiting_answer_is_not_taken_for_a_dead_processs(
    connect, offered, fake_openai, private_room, alice
):
    """No heartbeat is written while an answer waits; the stale-answer watch leaves it."""
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME)
    await database_sync_to_async(
        Message.objects.filter(pk=(await row(step["id"])).answer_id).update
    )(updated_at=(await row(step["id"])).created_at.replace(year=2000))
    await answers.answers_interrupt_stale()
    assert (await row(step["id"])).answer.status == Message.Status.STREAMING
    # A question asked meanwhile waits its turn behind it.
    await member.send(type="send", client_id="q2", text="And another thing")
    while True:
        frame = await member.receive()
        if frame["type"] == "message" and frame["message"].get("waiting"):
            break


async def test_in_a_shared_room_only_the_asker_or_an_approver_decides(
    connect, offered, fake_openai, shared_room, alice, bob
):
    asker = await connect(shared_room, alice)
    other = await connect(shared_room, bob)
    step = await pause(asker, fake_openai, ("pin", '{"text": "team"}'))
    await other.send(type="decide", step=step["id"], approve=True)
    refused = await other.expect("error")
    assert refused["code"] == "not_allowed"
    await other.send(type="decide", step=step["id"] + 1000, approve=True)
    assert (await other.expect("error"))["code"] == "not_pending"  # no such call

    offered(APPROVER_PERMISSION="parley.change_toolrun")
    await database_sync_to_async(
        lambda: bob.user_permissions.add(Permission.objects.get(codename="change_toolrun"))
    )()
    await other.send(type="decide", step=step["id"], approve=True, always=True)
    refused = await other.expect("error")
    assert refused["code"] == "not_allowed" and "themselves" in refused["detail"]

    fake_openai.enqueue(Script(tokens=["Pinned for the team."]))
    start = len(other.frames)
    await other.send(type="decide", step=step["id"], approve=True)
    _, done = await frames_until(other, "done", start=start)
    assert done["message"]["tools"][0]["decided_by"] == "bob"
    assert sample.called == [("pin", {"text": "team"})]


async def test_a_visitors_call_of_such_a_tool_is_refused_for_no_one_could_approve_it(
    offered, private_room
):
    answer = await database_sync_to_async(answer_to)(private_room, None)  # a visitor's question
    call = ToolCall(id="call_0", name="pin", arguments='{"text": "x"}')
    [run] = await database_sync_to_async(tool_runs_open)(
        answer=answer, calls=[call], round=1, text=""
    )
    assert await tools_run(answer=answer, runs=[run], tools=[sample.pin])  # nothing waits
    assert run.status == ToolRun.Status.REFUSED and "log in" in run.result
    assert sample.called == []


async def test_rights_are_read_again_when_the_approved_call_runs(
    connect, fake_openai, private_room, alice
):
    """Approval does not freeze the rights of the moment the model asked: here the room the
    call names stopped being the asker's own (renamed) while the call waited."""
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME)
    await database_sync_to_async(Room.objects.filter(pk=private_room.pk).update)(title="Moved")
    fake_openai.enqueue(Script(tokens=["I may not."]))
    start = len(member.frames)
    await member.send(type="decide", step=step["id"], approve=True)
    _, done = await frames_until(member, "done", start=start)
    assert [s["status"] for s in done["message"]["tools"]] == ["refused"]
    assert sample.called == []


async def test_a_stop_that_comes_as_the_approval_is_stored_is_kept_and_nothing_runs(
    connect, fake_openai, private_room, alice
):
    """The process taking a decision listens before it wins the row, and keeps what
    comes until it knows the answer: a stop sent then (it found no call waiting any more,
    and went to whoever runs the answer) ends it before the approved call starts."""
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME)
    answer = Answer(room=private_room)
    answer.expect_resume()
    decided = await database_sync_to_async(approval_decide)(
        run_id=step["id"], room_id=private_room.pk, user=alice, decision=Decision(True), worker="w"
    )
    answer.control(protocol.cancel_event(message_id=decided.answer_id, by="alice"))
    answer.resume(decided.answer)
    start = len(member.frames)
    answer_start(answer)
    _, done = await frames_until(member, "done", start=start)
    assert done["message"]["status"] == Message.Status.CANCELLED
    assert [s["status"] for s in done["message"]["tools"]] == ["cancelled"]
    assert sample.called == [] and len(fake_openai.exchanges) == 1


async def test_arguments_too_long_to_read_are_never_put_up_for_approval(
    connect, fake_openai, private_room, alice
):
    member = await connect(private_room, alice)
    readable = json.dumps({"text": "x" * 3000})  # longer than a step shows, but whole here
    step = await pause(member, fake_openai, ("pin", readable))
    assert step["arguments"] == readable
    await member.send(type="cancel")
    await frames_until(member, "done", start=len(member.frames))

    fake_openai.enqueue(
        Script(tokens=[], tool_calls=[("pin", json.dumps({"text": "x" * 5000}))]),
        Script(tokens=["Too long."]),
    )
    start = len(member.frames)
    await member.send(type="send", client_id="q2", text="Pin a lot")
    _, done = await frames_until(member, "done", start=start)
    [shown] = done["message"]["tools"]
    assert shown["status"] == "invalid" and "too long to be shown for approval" in shown["result"]
    assert sample.called == []


async def test_an_edit_that_changes_nothing_is_no_edit(connect, fake_openai, private_room, alice):
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, ("pin", '{"text": "same"}'))
    fake_openai.enqueue(Script(tokens=["Pinned."]))
    start = len(member.frames)
    await member.send(type="decide", step=step["id"], approve=True, arguments={"text": "same"})
    _, done = await frames_until(member, "done", start=start)
    assert "approved_arguments" not in done["message"]["tools"][0]
    assert fake_openai.exchanges[1].body["messages"][-1]["content"] == "Pinned: same"


async def test_the_calls_of_an_answer_whose_server_died_are_closed_with_it(
    connect, offered, fake_openai, private_room, alice
):
    member = await connect(private_room, alice)
    step = await pause(member, fake_openai, RENAME, ("pin", '{"text": "later"}'))
    await database_sync_to_async(approval_decide)(
        run_id=step["id"], room_id=private_room.pk, user=alice, decision=Decision(True), worker="w"
    )  # taken by a process that dies before it runs anything
    waited = await row(step["id"])
    await database_sync_to_async(Message.objects.filter(pk=waited.answer_id).update)(
        updated_at=waited.created_at.replace(year=2000)
    )
    await answers.answers_interrupt_stale()
    runs = await database_sync_to_async(list)(ToolRun.objects.order_by("pk"))
    assert [r.status for r in runs] == [ToolRun.Status.CANCELLED] * 2
    assert (await row(step["id"])).answer.status == Message.Status.INTERRUPTED


async def test_two_decisions_at_once_one_wins(connect, fake_openai, shared_room, alice, bob):
    """Two processes' database threads, at the same moment: the asker approves, an approver
    denies. One row, one winner; the other is told it is not waiting any more."""
    member = await connect(shared_room, alice)
    step = await pause(member, fake_openai, ("pin", '{"text": "race"}'))
    await database_sync_to_async(
        lambda: bob.user_permissions.add(Permission.objects.get(codename="change_toolrun"))
    )()
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(user, approve: bool) -> None:
        start.wait()
        try:
            approval_decide(
                run_id=step["id"], room_id=shared_room.pk, user=user,
                decision=Decision(approve), worker=f"w-{user.pk}",
            )  # fmt: skip
            outcomes.append("won")
        except DecisionRefused as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    with override_settings(PARLEY={"TOOLS": {"APPROVER_PERMISSION": "parley.change_toolrun"}}):
        threads = [
            threading.Thread(target=decide, args=(alice, True)),
            threading.Thread(target=decide, args=(bob, False)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
    assert sorted(outcomes) == ["not_pending", "won"]
    decided = await row(step["id"])
    assert decided.status in (ToolRun.Status.APPROVED, ToolRun.Status.DENIED)
