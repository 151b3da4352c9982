"""An approval outlives the server process that asked for it: two uvicorn processes on
Redis, the one that paused the answer killed with SIGKILL while the call waits, and the
approval given on the other, which goes on with the answer."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from channels.db import database_sync_to_async

from parley.models import Message, ToolRun
from tests.openai_server import Script
from tests.servers import Peer
from tests.test_server import follow_answer
from tests.tools import sample

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def stored(step_id: int) -> ToolRun:
    return ToolRun.objects.select_related("answer", "decided_by").get(pk=step_id)


def waiting(frame: dict) -> bool:
    return frame["type"] == "tool" and frame["step"]["status"] == ToolRun.Status.PENDING


async def test_a_killed_server_loses_no_approval_the_other_process_goes_on(
    servers, redis_env, fake_openai, alice, bob, shared_room
):
    backend = sample.offering(fake_openai.base_url, "pin")
    # Stale after 2 s, ten heartbeats: a loaded machine delays one by a second at times, and
    # the survivor's watch would close the answer it went on with as a dead process's.
    options = {"STREAM_PERSIST_INTERVAL": 0.2, "ANSWER_STALE_AFTER": 2.0}
    env = {
        **redis_env,
        "PARLEY_TEST_BACKEND": json.dumps(backend),
        "PARLEY_TEST_OPTIONS": json.dumps(options),
    }
    doomed, survivor = servers(env, name="doomed"), servers(env, name="survivor")
    asker = await Peer.connect(doomed, shared_room, alice)
    other = await Peer.connect(survivor, shared_room, bob)
    fake_openai.enqueue(
        Script(tokens=["I will pin it."], tool_calls=[("pin", '{"text": "standup at 9"}')]),
        Script(tokens=["Pinned ", "for the ", "team."]),
    )
    await asker.send(type="send", client_id="q1", text="Pin the standup time")
    step = (await other.expect(waiting))["step"]  # seen across processes, through Redis

    doomed.stop(signal.SIGKILL)
    # Longer than ANSWER_STALE_AFTER, watched twice a second by the survivor: a waiting
    # answer has no heartbeat, and must not be taken for the dead process's.
    await asyncio.sleep(3.5)
    row = await stored(step["id"])
    assert (row.status, row.answer.status) == (ToolRun.Status.PENDING, Message.Status.STREAMING)
    paused_by = row.answer.worker

    back = await Peer.connect(survivor, shared_room, alice)  # the asker's tab reconnects
    await back.send(type="resume", after=0)
    history = await back.expect(lambda f: f["type"] == "history")
    answer = next(m for m in history["messages"] if m["role"] == "assistant")
    assert answer["status"] == "streaming" and answer["text"] == "I will pin it."
    assert [(s["id"], s["status"]) for s in answer["tools"]] == [(step["id"], "pending")]

    await back.send(type="decide", step=step["id"], approve=True)
    for peer in (back, other):
        text, final = await follow_answer(peer, text=answer["text"], message_id=answer["id"])
        assert final["status"] == "complete"
        assert text == final["text"] == "I will pin it.\n\nPinned for the team."
        assert [s["status"] for s in final["tools"]] == ["done"]
    row = await stored(step["id"])
    assert row.status == ToolRun.Status.DONE and row.decided_by == alice
    assert row.result == "Pinned: standup at 9"
    assert fake_openai.exchanges[1].body["messages"][-1]["content"] == "Pinned: standup at 9"
    assert row.answer.worker != paused_by  # the survivor went on with it
    await other.close()
    await back.close()
