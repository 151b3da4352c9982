"""Answers that call tools, end to end: a member's socket through the real stack, the
runner, the OpenAI backend through the real ``openai`` client, and the fake model server
speaking the streamed ``tool_calls`` wire format."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from prometheus_client import REGISTRY

from example.asgi import application
from parley import answers
from parley.backends import get_backend
from parley.models import Message, ToolRun
from parley.testing import RoomClient
from tests.answers.test_answers import ask, frames_until, of_type, streamed_text
from tests.openai_server import Script
from tests.tools import sample

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = ("order_status", "audit_size", "wait")


@pytest.fixture
async def member(settings, fake_openai, private_room, alice):
    """Alice in her private room, whose backend offers the sample tools."""
    settings.PARLEY = {
        "BACKENDS": {"default": sample.offering(fake_openai.base_url, *TOOLS)},
        "STREAM_FLUSH_INTERVAL": 0.01,
        "TOOLS": {"MAX_ROUNDS": 2},
    }
    client = await RoomClient.connect(application, private_room, alice)
    assert (await client.receive())["type"] == "hello"
    yield client
    await answers.answers_shutdown()
    await client.disconnect()
    await get_backend().aclose()


def tool_calls_counted(status: str) -> float:
    """``parley_tool_calls_total`` of ``order_status`` calls that ended ``status``."""
    labels = {"tool": "order_status", "status": status}
    return REGISTRY.get_sample_value("parley_tool_calls_total", labels) or 0.0


@database_sync_to_async
def tool_runs() -> list[ToolRun]:
    return list(ToolRun.objects.order_by("pk"))


async def test_the_model_calls_tools_and_answers_with_their_results(member, fake_openai):
    fake_openai.enqueue(
        Script(
            tokens=["Let me look."],
            tool_calls=[("order_status", '{"number": 12}'), ("order_status", '{"number": 404}')],
        ),
        Script(tokens=["Order 12 has shipped; ", "there is no order 404."]),
    )
    counted = {status: tool_calls_counted(status) for status in ("done", "failed")}
    frames, done = await ask(member, "Where are orders 12 and 404?", client_id="c1")

    text = "Let me look.\n\nOrder 12 has shipped; there is no order 404."
    assert done["message"]["status"] == "complete" and done["message"]["text"] == text
    assert streamed_text(frames, done["message"]["id"]) == text
    first, second = fake_openai.exchanges
    assert [tool["function"]["name"] for tool in first.body["tools"]] == [
        "order_status",
        "audit_size",
        "wait",
    ]
    assert first.body["tools"][0]["function"]["parameters"] == sample.order_status.parameters
    calls, *results = second.body["messages"][-3:]
    assert calls["content"] == "Let me look."
    assert [c["function"]["arguments"] for c in calls["tool_calls"]] == [
        '{"number": 12}',
        '{"number": 404}',
    ]
    assert [r["content"] for r in results] == [
        '{"number": 12, "status": "shipped"}',
        "Error: There is no order numbered 404.",
    ]
    assert [r["tool_call_id"] for r in results] == [c["id"] for c in calls["tool_calls"]]

    steps = [frame["step"] for frame in of_type(frames, "tool")]
    assert [(s["tool"], s["status"], s["position"]) for s in steps] == [
        ("order_status", "done", 12),
        ("order_status", "failed", 12),
    ]
    runs = await tool_runs()
    assert [run.status for run in runs] == ["done", "failed"]
    # Each call counted once it settled, by its tool and how it ended (docs/operations.md).
    assert {status: tool_calls_counted(status) - n for status, n in counted.items()} == {
        "done": 1,
        "failed": 1,
    }
    assert {run.answer_id for run in runs} == {done["message"]["id"]}


async def test_a_refused_call_is_told_to_the_model_which_answers_anyway(member, fake_openai):
    fake_openai.enqueue(
        Script(tokens=[], tool_calls=[("audit_size", "{}")]),
        Script(tokens=["You may not read the audit."]),
    )
    _, done = await ask(member, "How big is the audit?", client_id="c1")
    assert done["message"]["text"] == "You may not read the audit."
    told = fake_openai.exchanges[1].body["messages"][-1]["content"]
    assert told == "The asker does not have permission to use the tool audit_size for this."
    assert sample.called == []


async def test_after_the_last_round_the_model_must_answer_in_text(member, fake_openai):
    """MAX_ROUNDS is 2: a model that calls tools for ever is offered none the third time."""
    always = Script(tokens=["Again."], tool_calls=[("order_status", '{"number": 1}')])
    fake_openai.script = always
    _, done = await ask(member, "Loop", client_id="c1")
    assert done["message"]["status"] == "complete"
    assert [e.body.get("tool_choice") for e in fake_openai.exchanges] == [None, None, "none"]
    assert len(await tool_runs()) == 2  # the third reply's call is not run
    assert done["message"]["text"] == "Again.\n\nAgain.\n\nAgain."


async def test_stop_during_a_tool_call_ends_the_answer_and_nothing_more_runs(member, fake_openai):
    fake_openai.enqueue(
        Script(
            tokens=[], tool_calls=[("wait", '{"seconds": 30}'), ("order_status", '{"number": 1}')]
        )
    )
    start = len(member.frames)
    await member.send(type="send", client_id="c1", text="Wait for me")
    while not sample.called:
        await asyncio.sleep(0.01)
    await member.send(type="cancel")
    _, done = await frames_until(member, "done", start=start)
    assert done["message"]["status"] == Message.Status.CANCELLED
    runs = await tool_runs()
    assert [(run.tool, run.status) for run in runs] == [
        ("wait", ToolRun.Status.CANCELLED),
        ("order_status", ToolRun.Status.CANCELLED),  # stored, never started
    ]
    assert [name for name, _ in sample.called] == ["wait"]
    assert len(fake_openai.exchanges) == 1  # the results were never sent back
