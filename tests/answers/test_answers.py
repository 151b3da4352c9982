"""Answers end to end: a member's socket through the real routing and middleware stack
(``example.asgi.application``), the answer runner, and the OpenAI backend talking HTTP to the
fake model server (or backends of this module that break the contract)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from example.asgi import application
from parley import answers
from parley.answers import records
from parley.backends import AssistantBackend, AssistantRequest, TextDelta, get_backend
from parley.contrib.orm import messages_context
from parley.models import Message
from parley.rooms import services
from parley.testing import RoomClient
from tests.openai_server import FakeOpenAIServer, Script
from tests.servers import Peer

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = Script(tokens=[f"word{i} " for i in range(200)], delay=0.05)


async def ask(
    client: RoomClient, text: str, client_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Send ``text``; the frames received, in order, up to the assistant's ``done``, and it."""
    start = len(client.frames)
    await client.send(type="send", client_id=client_id, text=text)
    return await frames_until(client, "done", start=start)


async def frames_until(
    client: RoomClient, kind: str, *, start: int, timeout: float = 10
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Receive until a frame of ``kind``; the frames from ``start`` on, and that frame."""
    while True:
        frame = await client.receive(timeout)
        if frame["type"] == kind:
            return client.frames[start:], frame


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [frame for frame in frames if frame["type"] == kind]


def streamed_text(frames: list[dict[str, Any]], message_id: int) -> str:
    """The answer as a client assembles it from the deltas (each must continue the text)."""
    text = ""
    for frame in of_type(frames, "delta"):
        if frame["message_id"] == message_id:
            assert frame["offset"] == len(text), "a delta left a gap or overlapped"
            text += frame["text"]
    return text


@database_sync_to_async
def stored(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


@pytest.fixture
async def openai_backend(settings, fake_openai):
    """Rooms answer with the OpenAI backend, pointed at the fake model server."""
    settings.PARLEY = {
        "BACKENDS": {
            "default": {
                "BACKEND": "parley.backends.openai.OpenAIBackend",
                "OPTIONS": {
                    "base_url": fake_openai.base_url,
                    "api_key": "sk-test-answers-0123456789",
                    "model": "fake-model",
                    "timeout": 10,
                },
            }
        },
        "STREAM_FLUSH_INTERVAL": 0.01,
    }
    yield
    await get_backend().aclose()


@pytest.fixture
async def member(openai_backend, private_room, alice):
    """Alice, connected to her private room (the hello frame already received)."""
    client = await RoomClient.connect(application, private_room, alice)
    assert client.connected
    assert (await client.receive())["type"] == "hello"
    yield client
    await answers.answers_shutdown()  # nothing of this test may outlive its event loop
    await client.disconnect()


async def test_an_answer_streams_from_the_model_to_the_room(member, fake_openai):
    frames, done = await ask(member, "hi", client_id="c1")

    [ack] = of_type(frames, "ack")
    assert ack["client_id"] == "c1" and ack["duplicate"] is False
    assert ack["message"]["role"] == "user" and ack["message"]["text"] == "hi"
    question, answer = (frame["message"] for frame in of_type(frames, "message"))
    assert question["id"] == ack["message"]["id"]
    assert answer["role"] == "assistant" and answer["status"] == "streaming"
    assert answer["reply_to"] == question["id"]

    assert streamed_text(frames, answer["id"]) == Script().text
    assert done["message"]["id"] == answer["id"]
    assert done["message"]["status"] == "complete"
    assert done["message"]["text"] == Script().text
    assert "Hello from the fake model." in done["message"]["html"]
    assert not of_type(frames, "error")

    message = await stored(answer["id"])
    assert (message.status, message.text) == (Message.Status.COMPLETE, Script().text)
    assert fake_openai.last.body["messages"][-1] == {"role": "user", "content": "alice: hi"}


async def test_an_answer_names_the_model_its_server_says_wrote_it(member, fake_openai):
    """At first the model asked for (the backend's name for it), at the end the one the
    server says it ran: stored, in `done` and in the history."""
    fake_openai.script = Script(model="fake-model-2026-12-01")
    frames, done = await ask(member, "hi", client_id="c1")
    _, opened = (frame["message"] for frame in of_type(frames, "message"))
    assert opened["model"] == "fake-model"
    assert done["message"]["model"] == "fake-model-2026-12-01"
    assert (await stored(opened["id"])).model == "fake-model-2026-12-01"
    await member.send(type="resume", after=0)
    history = await member.expect("history")
    assert [m.get("model") for m in history["messages"]] == [None, "fake-model-2026-12-01"]


async def test_stop_cancels_the_answer_and_the_model_stops_generating(member, fake_openai):
    fake_openai.script = SLOW
    start = len(member.frames)
    await member.send(type="send", client_id="c1", text="Tell me a long story")
    _, first = await frames_until(member, "delta", start=start)
    await member.send(type="cancel")
    frames, done = await frames_until(member, "done", start=start)

    assert done["message"]["status"] == "cancelled"
    partial = done["message"]["text"]
    assert partial and SLOW.text.startswith(partial) and len(partial) < len(SLOW.text)
    assert streamed_text(frames, first["message_id"]) == partial

    # The model server saw the request go away, and wrote nothing more.
    exchange = await fake_openai.client_went_away()
    assert exchange.tokens_sent < len(SLOW.tokens) // 2

    message = await stored(first["message_id"])
    assert (message.status, message.text) == (Message.Status.CANCELLED, partial)


async def test_every_running_answer_has_its_text_so_far_saved_while_it_streams(
    member, fake_openai, settings, bob
):
    """One heartbeat pass saves all of a process's answers: what a member resuming after a
    crash of this process would find."""
    settings.PARLEY = {**settings.PARLEY, "STREAM_PERSIST_INTERVAL": 0.05}
    fake_openai.script = SLOW
    bobs_room = await database_sync_to_async(services.room_create)(owner=bob, title="Bob's")
    other = await RoomClient.connect(application, bobs_room, bob)
    assert (await other.receive())["type"] == "hello"
    try:
        firsts = []
        for client in (member, other):
            start = len(client.frames)
            await client.send(type="send", client_id="long", text="Tell me a long story")
            firsts.append((await frames_until(client, "delta", start=start))[1])
        ids = [first["message_id"] for first in firsts]
        for _ in range(100):
            rows = [await stored(pk) for pk in ids]
            if all(len(row.text) > len(SLOW.tokens[0]) for row in rows):
                break
            await asyncio.sleep(0.05)
        assert all(row.status == Message.Status.STREAMING for row in rows)
        assert all(SLOW.text.startswith(row.text) and row.text for row in rows)
        assert all(len(row.text) > len(SLOW.tokens[0]) for row in rows), "no progress saved"
    finally:
        await answers.answers_shutdown()
        await other.disconnect()


async def test_asking_where_a_dead_process_left_an_answer_closes_it_then_answers(
    member, private_room
):
    """The answer of a process that died (its heartbeat stopped) holds the room's one
    streaming slot: the next question closes it as interrupted, tells the room, and is
    answered, without waiting for the stale-answer watch."""

    @database_sync_to_async
    def dead_answer() -> Message:
        question, _ = services.message_post(room=private_room, author=private_room.owner, text="q")
        answer, _ = records.answer_open(room=private_room, reply_to=question, worker="dead")
        Message.objects.filter(pk=answer.pk).update(
            text="half an ans", updated_at=timezone.now() - timedelta(minutes=5)
        )
        return answer

    dead = await dead_answer()
    frames, done = await ask(member, "hi", client_id="c1")  # the dead answer's done comes first
    assert done["message"]["id"] == dead.pk
    frames, done = await frames_until(member, "done", start=len(member.frames) - len(frames))

    closed = [f for f in of_type(frames, "done") if f["message"]["id"] == dead.pk]
    assert [f["message"]["status"] for f in closed] == ["interrupted"]
    assert closed[0]["message"]["text"] == "half an ans"
    announced = [f for f in of_type(frames, "message") if f["message"]["role"] == "assistant"]
    assert frames.index(closed[0]) < frames.index(announced[0])  # the room is told first
    assert done["message"]["status"] == "complete" and done["message"]["id"] != dead.pk
    assert (await stored(dead.pk)).status == Message.Status.INTERRUPTED


async def test_a_member_called_shutdown_who_presses_stop_cancels(
    openai_backend, fake_openai, make_user
):
    """Who stopped an answer is kept apart from why: the username ``shutdown`` is no reason."""
    user = await database_sync_to_async(make_user)("shutdown")
    room = await database_sync_to_async(services.room_create)(
        owner=user, title="Notes", kind="private"
    )
    fake_openai.script = SLOW
    client = await RoomClient.connect(application, room, user)
    try:
        assert (await client.receive())["type"] == "hello"
        await client.send(type="send", client_id="c1", text="Tell me a long story")
        _, first = await frames_until(client, "delta", start=0)
        await client.send(type="cancel")
        _, done = await frames_until(client, "done", start=0)
    finally:
        await answers.answers_shutdown()
        await client.disconnect()

    assert done["message"]["status"] == "cancelled" and "error" not in done["message"]
    message = await stored(first["message_id"])
    assert message.status == Message.Status.CANCELLED


async def test_stop_while_the_model_is_still_thinking(member, fake_openai):
    fake_openai.script = Script(hang=True)  # e.g. a local model still loading
    start = len(member.frames)
    await member.send(type="send", client_id="c1", text="Are you there?")
    _, started = await frames_until(member, "message", start=start)
    while started["message"]["role"] != "assistant":
        _, started = await frames_until(member, "message", start=start)
    await fake_openai.wait_for(lambda: bool(fake_openai.exchanges))  # the model got it
    await member.send(type="cancel")
    frames, done = await frames_until(member, "done", start=start, timeout=5)

    assert done["message"]["id"] == started["message"]["id"]
    assert (done["message"]["status"], done["message"]["text"]) == ("cancelled", "")
    assert not of_type(frames, "delta") and not of_type(frames, "error")
    await fake_openai.client_went_away()


@pytest.mark.parametrize(
    "failure, shown, partial",
    [
        (
            Script(
                status=500, error={"message": "The model is overloaded.", "type": "server_error"}
            ),
            "The assistant could not answer.",
            "",
        ),
        (
            Script(fail_after=3, error={"message": "CUDA out of memory", "type": "server_error"}),
            "The assistant failed while answering.",
            "".join(Script().tokens[:3]),
        ),
    ],
    ids=["http-500", "error-mid-stream"],
)
async def test_a_failed_answer_is_reported_and_the_room_can_ask_again(
    member, fake_openai, failure, shown, partial
):
    fake_openai.enqueue(failure)
    frames, done = await ask(member, "hi", client_id="c1")
    answer_id = done["message"]["id"]

    assert done["message"]["status"] == "failed"
    assert done["message"]["text"] == partial == streamed_text(frames, answer_id)
    assert shown in done["message"]["error"]
    _, error = await frames_until(member, "error", start=len(member.frames))
    assert error["code"] == "assistant_failed"
    assert error["message_id"] == answer_id
    assert error["detail"] == shown  # a plain sentence: the model server's address is logged
    host_port = fake_openai.base_url.split("//")[1].split("/")[0]
    for text in (error["detail"], done["message"]["error"]):
        assert host_port not in text and "127.0.0.1" not in text and "sk-test" not in text
    message = await stored(answer_id)
    assert message.status == Message.Status.FAILED

    # The next question gets a whole answer.
    frames, done = await ask(member, "hi again", client_id="c2")
    assert done["message"]["status"] == "complete"
    assert done["message"]["text"] == Script().text == streamed_text(frames, done["message"]["id"])
    assert len(fake_openai.exchanges) == 2


def answer_logs(caplog: pytest.LogCaptureFixture, answer_id: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith(f"answer {answer_id} in room ")
    ]


async def test_the_answer_logs_the_models_usage_and_finish_reason(member, fake_openai, caplog):
    caplog.set_level(logging.INFO, logger="parley.answers")
    _, done = await ask(member, "hi", client_id="c1")
    await answers.answers_shutdown()  # waits for the runner to log its line
    answer = done["message"]
    [line] = answer_logs(caplog, answer["id"])
    # Usage as the fake model server counts: 10 prompt tokens, one per content piece.
    assert line.endswith(
        f": complete, {len(Script().text)} characters, finish stop, "
        f"tokens 10+{len(Script().tokens)}"
    )


async def test_a_stopped_answer_logs_its_finish_as_cancelled(member, fake_openai, caplog):
    caplog.set_level(logging.INFO, logger="parley.answers")
    fake_openai.script = SLOW
    start = len(member.frames)
    await member.send(type="send", client_id="c1", text="Tell me a long story")
    await frames_until(member, "delta", start=start)
    await member.send(type="cancel")
    _, done = await frames_until(member, "done", start=start)
    await answers.answers_shutdown()
    [line] = answer_logs(caplog, done["message"]["id"])
    assert ": cancelled, " in line and line.endswith(", finish cancelled, tokens not counted")


class LegacyBackend(AssistantBackend):
    """Written against the contract before typed events: yields bare strings."""

    async def stream(self, request: AssistantRequest) -> AsyncIterator[str]:  # type: ignore[override]
        for piece in ("Hello", " from", " an", " older", " backend."):
            yield piece


class BytesBackend(AssistantBackend):
    """Breaks the contract half-way: yields bytes after some text."""

    async def stream(self, request: AssistantRequest) -> AsyncIterator[Any]:
        yield TextDelta("Half an ")
        yield b"answer."


@pytest.fixture
async def member_with(settings, private_room, alice):
    """Alice in her private room, answered by the backend class at the dotted path given."""
    clients: list[RoomClient] = []

    async def connect(path: str) -> RoomClient:
        settings.PARLEY = {
            "BACKENDS": {"default": {"BACKEND": path, "OPTIONS": {}}},
            "STREAM_FLUSH_INTERVAL": 0.01,
        }
        client = await RoomClient.connect(application, private_room, alice)
        clients.append(client)
        assert (await client.receive())["type"] == "hello"
        return client

    yield connect
    await answers.answers_shutdown()
    for client in clients:
        await client.disconnect()


async def test_a_backend_yielding_bare_strings_still_answers_with_one_warning(member_with, caplog):
    member = await member_with("tests.answers.test_answers.LegacyBackend")
    caplog.set_level(logging.INFO)
    for client_id in ("c1", "c2"):
        frames, done = await ask(member, "hi", client_id=client_id)
        assert done["message"]["status"] == "complete"
        assert done["message"]["text"] == "Hello from an older backend."
        assert streamed_text(frames, done["message"]["id"]) == done["message"]["text"]
        assert not of_type(frames, "error")
    await answers.answers_shutdown()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(" ", 1)[0] for r in warned] == [
        "tests.answers.test_answers.LegacyBackend.stream"  # once for the class, not per piece
    ]
    assert "deprecated" in warned[0].getMessage()
    [line] = answer_logs(caplog, done["message"]["id"])
    assert line.endswith(", finish unknown, tokens not counted")  # it told neither


async def test_a_backend_yielding_something_else_fails_the_answer_plainly(member_with, caplog):
    member = await member_with("tests.answers.test_answers.BytesBackend")
    frames, done = await ask(member, "hi", client_id="c1")
    answer = done["message"]
    assert (answer["status"], answer["text"]) == ("failed", "Half an ")
    assert answer["error"] == "The assistant failed unexpectedly."
    _, error = await frames_until(member, "error", start=len(member.frames))
    assert (error["code"], error["detail"]) == ("assistant_failed", answer["error"])
    # The log says which backend broke the contract, and how.
    assert any(
        "tests.answers.test_answers.BytesBackend.stream yielded a bytes" in record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
    )
    assert (await stored(answer["id"])).status == Message.Status.FAILED


def openai_env(fake: FakeOpenAIServer, **more: Any) -> dict[str, str]:
    """Environment for a server subprocess answering with the OpenAI backend and ``fake``
    (``more``: further backend options)."""
    options = {
        "base_url": fake.base_url,
        "api_key": "sk-test-server",
        "model": "fake-model",
        **more,
    }
    backend = {"BACKEND": "parley.backends.openai.OpenAIBackend", "OPTIONS": options}
    return {"PARLEY_TEST_BACKEND": json.dumps(backend)}


@pytest.mark.server
async def test_a_real_server_streams_from_the_model_and_stop_reaches_it(
    servers, fake_openai, alice, private_room
):
    server = servers(openai_env(fake_openai))
    peer = await Peer.connect(server, private_room, alice)
    await peer.send(type="send", client_id="c1", text="hi")
    done = await peer.expect(lambda f: f["type"] == "done")
    assert (done["message"]["status"], done["message"]["text"]) == ("complete", Script().text)

    fake_openai.script = SLOW
    await peer.send(type="send", client_id="c2", text="Tell me a long story")
    started = await peer.answer_started(not_id=done["message"]["id"])
    await peer.expect(lambda f: f["type"] == "delta" and f["message_id"] == started["id"])
    await peer.send(type="cancel")
    stopped = await peer.expect(
        lambda f: f["type"] == "done" and f["message"]["id"] == started["id"]
    )
    assert stopped["message"]["status"] == "cancelled"
    exchange = await fake_openai.client_went_away()
    assert exchange.tokens_sent < len(SLOW.tokens) // 2
    assert SLOW.text.startswith(stopped["message"]["text"])
    await peer.close()


@pytest.fixture
def model_server_down():
    """A fake model server that is not up yet: its port is taken but nobody listens, so
    connections to it are refused until the test calls ``start()``."""
    server = FakeOpenAIServer()
    yield server
    server.stop()


MID_ANSWER_ERROR = {"message": "CUDA out of memory", "type": "server_error"}


@pytest.mark.server
@pytest.mark.parametrize(
    "fault, script, shown",
    [
        ("refused", None, "The assistant could not be reached."),
        ("hangs", Script(hang=True), "The assistant timed out"),
        ("stalls", Script(hang_after=3), "The assistant timed out"),
        ("drops", Script(drop_after=3), "The assistant's answer was cut off."),
        ("errs", Script(fail_after=3, error=MID_ANSWER_ERROR), "failed while answering"),
    ],
    ids=["refused", "hangs", "stalls", "drops", "errs"],
)
async def test_a_real_server_survives_a_failing_model(
    request, servers, alice, private_room, fault, script, shown
):
    """The model server is down, too slow (the backend's timeout fires), or fails after some
    tokens: the answer fails with a plain error for the room, the room goes on, and asking
    again works once the model server is well."""
    if script is None:
        model = request.getfixturevalue("model_server_down")
    else:
        model = request.getfixturevalue("fake_openai")
        model.enqueue(script)  # the first request fails; later ones answer in full
    partial = "".join(Script().tokens[:3]) if fault in {"stalls", "drops", "errs"} else ""
    server = servers(openai_env(model, timeout=1))
    peer = await Peer.connect(server, private_room, alice)

    await peer.send(type="send", client_id="q1", text="hi")
    started = await peer.answer_started()
    done = await peer.expect(lambda f: f["type"] == "done")
    assert done["message"]["id"] == started["id"]
    assert done["message"]["status"] == "failed"
    assert done["message"]["text"] == partial
    error = await peer.expect(lambda f: f["type"] == "error")
    assert (error["code"], error["message_id"]) == ("assistant_failed", started["id"])
    assert error["detail"] == done["message"]["error"]
    assert error["detail"].startswith("The assistant") and shown in error["detail"]
    # The model server's address is for whoever runs the site (the log), not for the room.
    host_port = model.base_url.split("//")[1].split("/")[0]
    assert host_port not in json.dumps(done) and host_port not in json.dumps(error)
    assert host_port in server.log()
    assert "Traceback" not in error["detail"] and "sk-test" not in error["detail"]
    stored_answer = await stored(started["id"])
    assert host_port not in stored_answer.error
    assert (stored_answer.status, stored_answer.text) == (Message.Status.FAILED, partial)

    # The room stays usable: a plain message posts.
    await peer.send(type="send", client_id="m1", text="still here?", ask=False)
    ack = await peer.expect(lambda f: f["type"] == "ack" and f["client_id"] == "m1")
    assert ack["message"]["seq"] == done["message"]["seq"] + 1

    # Once the model server is well, asking again gets a whole answer.
    if fault == "refused":
        model.start()
    await peer.send(type="send", client_id="q2", text="hi again")
    retry = await peer.answer_started(not_id=started["id"])
    done = await peer.expect(lambda f: f["type"] == "done" and f["message"]["id"] == retry["id"])
    assert (done["message"]["status"], done["message"]["text"]) == ("complete", Script().text)
    assert (await stored(retry["id"])).status == Message.Status.COMPLETE
    assert not [f for f in peer.frames if f["type"] == "error" and f is not error]
    await peer.close()


async def regenerate(client: RoomClient, answer_id: int) -> tuple[list[dict[str, Any]], dict]:
    """Ask for ``answer_id`` again; the frames up to the new version's ``done``, and it."""
    start = len(client.frames)
    await client.send(type="regenerate", message_id=answer_id)
    return await frames_until(client, "done", start=start)


async def test_a_failed_answer_is_retried_and_each_version_is_kept_with_the_same_context(
    member, fake_openai
):
    """The model fails; "Retry" answers the same question again, with what led to it; then
    "Regenerate" once more. Every version stays, each marked as a version of the first, and
    the next question's context holds the newest only, in the first one's place."""
    fake_openai.enqueue(Script(status=500), Script(tokens=["Second."]), Script(tokens=["Third."]))
    _, failed = await ask(member, "hi", client_id="c1")
    first = failed["message"]
    assert first["status"] == "failed" and "version_of" not in first

    frames, retried = await regenerate(member, first["id"])
    [opened] = [f["message"] for f in of_type(frames, "message")]
    assert opened["version_of"] == first["id"] and opened["reply_to"] == first["reply_to"]
    assert retried["message"]["text"] == "Second." and retried["message"]["status"] == "complete"
    _, third = await regenerate(member, retried["message"]["id"])
    assert (
        third["message"]["version_of"] == first["id"]
    )  # a version of the first, not of the second
    requests = [exchange.body["messages"] for exchange in fake_openai.exchanges]
    assert requests[0] == requests[1] == requests[2]  # the same path: up to the question

    await ask(member, "and then?", client_id="c2")
    turns = [(m["role"], m["content"]) for m in fake_openai.last.body["messages"]]
    assert turns[-3:] == [
        ("user", "alice: hi"),
        ("assistant", "Third."),
        ("user", "alice: and then?"),
    ]
    rows = await database_sync_to_async(
        lambda: list(Message.objects.filter(role="assistant").values_list("text", "version_of"))
    )()
    assert [text for text, _ in rows[:3]] == ["", "Second.", "Third."]
    assert [version for _, version in rows[:3]] == [None, first["id"], first["id"]]


async def test_only_a_finished_answer_of_the_room_is_asked_for_again(
    member, fake_openai, private_room
):
    fake_openai.script = SLOW
    start = len(member.frames)
    await member.send(type="send", client_id="c1", text="hi")
    frames, _ = await frames_until(member, "delta", start=start)
    question, streaming = (f["message"] for f in of_type(frames, "message"))
    for message_id, code in (
        (streaming["id"], "not_regenerable"),  # still streaming
        (question["id"], "not_regenerable"),  # a question
        (10**9, "not_regenerable"),  # no such message (or another room's)
    ):
        start = len(member.frames)
        await member.send(type="regenerate", message_id=message_id)
        _, error = await frames_until(member, "error", start=start)
        assert (error["code"], error["message_id"]) == (code, message_id)
    await member.send(type="cancel")
    _, done = await frames_until(member, "done", start=len(member.frames))
    fake_openai.script = Script()
    await member.send(type="send", client_id="c2", text="again", ask=False)
    # Answers stream one at a time: asking again during an answer is refused, clearly.
    fake_openai.script = SLOW
    start = len(member.frames)
    await member.send(type="regenerate", message_id=done["message"]["id"])
    await frames_until(member, "delta", start=start)
    await member.send(type="regenerate", message_id=done["message"]["id"])
    _, busy = await frames_until(member, "error", start=start)
    assert busy["code"] == "assistant_busy"


@pytest.mark.django_db
def test_the_context_is_the_path_however_many_versions_an_answer_has(private_room, alice):
    """Forty versions of an answer leave the context its path: the newest version in the
    first one's place, and as many earlier messages as the limit allows."""

    def answered(question: Message, text: str, version_of: Message | None = None) -> Message:
        answer, _ = records.answer_open(
            room=private_room, reply_to=question, worker="w", version_of=version_of
        )
        return records.answer_finish(answer=answer, text=text, status="complete")

    q0, _ = services.message_post(room=private_room, author=alice, text="earlier", client_id="0")
    answered(q0, "earlier answer")
    q1, _ = services.message_post(room=private_room, author=alice, text="hi", client_id="1")
    first = answered(q1, "v0")
    for n in range(1, 41):
        answered(q1, f"v{n}", version_of=first)
    q2, _ = services.message_post(room=private_room, author=alice, text="next", client_id="2")
    turns = messages_context(room_id=private_room.pk, before=q2.seq + 1, limit=5)
    assert [text for _, text, _ in turns] == ["earlier", "earlier answer", "hi", "v40", "next"]
    # Asked again before the later versions existed, the path is as it stood then.
    then = messages_context(room_id=private_room.pk, before=first.seq + 4, limit=5)
    assert [text for _, text, _ in then][-2:] == ["hi", "v3"]


@pytest.mark.django_db
def test_an_answer_that_ended_after_the_next_question_comes_before_it(private_room, alice):
    """Two questions stored together, the first answered after both: the model reads each
    question followed by its answer, not two questions then an answer."""
    q1, _ = services.message_post(room=private_room, author=alice, text="one", client_id="1")
    q2, _ = services.message_post(room=private_room, author=alice, text="two", client_id="2")
    answer, _ = records.answer_open(room=private_room, reply_to=q1, worker="w")
    records.answer_finish(answer=answer, text="first answer", status="complete")
    later, _ = services.message_post(room=private_room, author=alice, text="three", client_id="3")
    turns = messages_context(room_id=private_room.pk, before=later.seq + 1, limit=10)
    assert [text for _, text, _ in turns] == ["one", "first answer", "two", "three"]


async def edit(
    client: RoomClient, question_id: int, text: str, client_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Send ``text`` as an edit of ``question_id``; the frames up to its answer's ``done``."""
    start = len(client.frames)
    await client.send(type="send", client_id=client_id, text=text, edit_of=question_id)
    return await frames_until(client, "done", start=start)


async def test_an_edited_question_is_asked_with_what_came_before_the_first(member, fake_openai):
    """Alice edits her second question: it is a new version of the first, answered with
    the conversation before the original (not the original or its answer); the next
    question's context holds the edited exchange in its place; a resend is stored once."""
    fake_openai.enqueue(
        Script(tokens=["One."]), Script(tokens=["Paris."]), Script(tokens=["Seine."]),
        Script(tokens=["Lyon."]),
    )  # fmt: skip
    await ask(member, "first", client_id="c1")
    _, answered = await ask(member, "capital of Frnace?", client_id="c2")
    original = answered["message"]["reply_to"]
    await ask(member, "and its river?", client_id="c3")

    frames, done = await edit(member, original, "largest city of France after Paris?", "c4")
    [ack] = of_type(frames, "ack")
    assert ack["message"]["version_of"] == original and ack["message"]["role"] == "user"
    assert (
        done["message"]["reply_to"] == ack["message"]["id"] and "version_of" not in done["message"]
    )
    assert done["message"]["text"] == "Lyon."
    asked = [(m["role"], m["content"]) for m in fake_openai.last.body["messages"][1:]]
    assert asked == [
        ("user", "alice: first"),
        ("assistant", "One."),
        ("user", "alice: largest city of France after Paris?"),
    ]
    # The same edit sent again (its ack was lost): stored once, not answered twice.
    start = len(member.frames)
    await member.send(
        type="send", client_id="c4", text="largest city of France after Paris?", edit_of=original
    )
    _, again = await frames_until(member, "ack", start=start)
    assert again["duplicate"] is True and again["message"]["id"] == ack["message"]["id"]

    await ask(member, "thanks", client_id="c5")
    turns = [m["content"] for m in fake_openai.last.body["messages"][1:]]
    assert turns == [
        "alice: first", "One.",
        "alice: largest city of France after Paris?", "Lyon.",  # in the original's place
        "alice: and its river?", "Seine.",
        "alice: thanks",
    ]  # fmt: skip
    assert len(fake_openai.exchanges) == 5


async def edit_refused(client: RoomClient, message_id: int) -> str:
    """Send an edit of ``message_id`` that must be refused with ``not_editable``; its
    detail."""
    start = len(client.frames)
    client_id = f"edit-{message_id}-{start}"
    await client.send(type="send", client_id=client_id, text="x", edit_of=message_id)
    _, refused = await frames_until(client, "error", start=start)
    assert (refused["code"], refused["client_id"]) == ("not_editable", client_id)
    return str(refused["detail"])


async def test_only_ones_own_question_is_edited(
    openai_backend, fake_openai, shared_room, alice, bob
):
    """In a shared room Bob cannot edit Alice's question (nor an answer, nor a waiting
    question); Alice can, and Bob sees her new version and its answer."""
    alice_client = await RoomClient.connect(application, shared_room, alice)
    bob_client = await RoomClient.connect(application, shared_room, bob)
    try:
        for client in (alice_client, bob_client):
            assert (await client.receive())["type"] == "hello"
        _, done = await ask(alice_client, "hi", client_id="a1")
        question, answer = done["message"]["reply_to"], done["message"]["id"]
        for target in (question, answer, 10**9):
            await edit_refused(bob_client, target)

        fake_openai.script = SLOW
        start = len(alice_client.frames)
        await alice_client.send(type="send", client_id="a2", text="long one")
        _, long_one = await frames_until(alice_client, "ack", start=start)
        await frames_until(alice_client, "delta", start=start)
        assert "being answered" in await edit_refused(alice_client, long_one["message"]["id"])
        await alice_client.send(type="send", client_id="a3", text="waits")
        _, acked = await frames_until(alice_client, "ack", start=len(alice_client.frames))
        assert "waiting" in await edit_refused(alice_client, acked["message"]["id"])
        # An edit waits its turn too; then no version of that question can be edited: the
        # exchange would have two questions in the queue.
        start = len(alice_client.frames)
        await alice_client.send(type="send", client_id="a6", text="hi!", edit_of=question)
        _, queued = await frames_until(alice_client, "ack", start=start)
        await edit_refused(alice_client, question)
        await alice_client.send(type="withdraw", message_id=queued["message"]["id"])
        await alice_client.send(type="withdraw", message_id=acked["message"]["id"])
        await alice_client.send(type="cancel")
        await frames_until(alice_client, "done", start=start)

        fake_openai.script = Script(tokens=["Hello again."])
        start = len(bob_client.frames)
        await alice_client.send(type="send", client_id="a5", text="hello", edit_of=question)
        while True:  # Bob reads on: the frames of the answer Alice stopped come first
            frames, done = await frames_until(bob_client, "done", start=start)
            if done["message"]["text"] == "Hello again.":
                break
        [edited] = [
            f["message"]
            for f in of_type(frames, "message")
            if f["message"].get("client_id") == "a5"
        ]
        assert (edited["text"], edited["version_of"]) == ("hello", question)
        assert done["message"]["reply_to"] == edited["id"]
        # The answer to the question's first version is not asked for again: it was edited.
        start = len(bob_client.frames)
        await bob_client.send(type="regenerate", message_id=answer)
        _, refused = await frames_until(bob_client, "error", start=start)
        assert refused["code"] == "not_regenerable" and "edited" in refused["detail"]
    finally:
        await answers.answers_shutdown()
        await alice_client.disconnect()
        await bob_client.disconnect()
