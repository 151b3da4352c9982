"""Questions wait their turn (parley/answers/queue.py): asked while an answer streams, a
question is answered after it, in order; its poster may withdraw it; the queue is bounded
and outlives the process that holds it."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from parley import answers
from parley.models import Message
from parley.rooms import services
from tests.realtime.test_consumers import finished, joined, long_answer_streaming, stored

pytestmark = [pytest.mark.django_db(transaction=True)]


async def shown(client, seq: int, *, waiting: bool) -> dict:
    """The next ``message`` frame for message ``seq`` that shows it waiting, or not."""
    while True:
        frame = (await client.expect("message", timeout=5))["message"]
        if frame["seq"] == seq and bool(frame.get("waiting")) is waiting:
            return frame


async def ask(client, client_id: str, text: str) -> dict:
    await client.send(type="send", client_id=client_id, text=text)
    return (await client.expect("ack", client_id=client_id))["message"]


async def test_questions_asked_during_an_answer_are_answered_after_it_in_order(
    connect, alice, bob, shared_room, backend
):
    a, b = await long_answer_streaming(connect, shared_room, alice, bob, backend, repeat=60)
    second = await ask(b, "q2", "second")
    third = await ask(a, "q3", "third")
    for question in (second, third):  # every member sees them waiting
        assert (await shown(a, question["seq"], waiting=True))["text"] == question["text"]

    replies = []
    for _ in range(3):
        replies.append((await finished(a, timeout=20))["reply_to"])
    first_question = (await database_sync_to_async(stored)(shared_room, role="user"))[0]
    assert replies == [first_question.pk, second["id"], third["id"]]
    rows = await database_sync_to_async(stored)(shared_room, role="user")
    assert [row.waiting for row in rows] == [False, False, False]


async def test_a_waiting_question_can_be_withdrawn_by_its_poster_only(
    connect, alice, bob, shared_room, backend
):
    a, b = await long_answer_streaming(connect, shared_room, alice, bob, backend, repeat=60)
    waiting = await ask(b, "q2", "never mind")
    await a.send(type="withdraw", message_id=waiting["id"])  # not alice's to withdraw
    refused = await a.expect("error")
    assert refused["code"] == "not_waiting" and refused["message_id"] == waiting["id"]

    await shown(b, waiting["seq"], waiting=True)
    await b.send(type="withdraw", message_id=waiting["id"])
    assert "waiting" not in await shown(b, waiting["seq"], waiting=False)
    await finished(a, timeout=20)
    assert len(await database_sync_to_async(stored)(shared_room, role="assistant")) == 1


async def test_past_the_queues_length_a_question_is_stored_with_a_clear_error(
    connect, alice, bob, shared_room, backend, settings
):
    a, b = await long_answer_streaming(connect, shared_room, alice, bob, backend, repeat=300)
    settings.PARLEY = {**settings.PARLEY, "MAX_WAITING_QUESTIONS": 1}
    await ask(b, "q2", "waits")
    over = await ask(b, "q3", "one too many")
    error = await b.expect("error")
    assert error["code"] == "queue_full" and error["client_id"] == "q3"
    row = await Message.objects.aget(pk=over["id"])
    assert row.text == "one too many" and not row.waiting
    await a.send(type="cancel")


async def test_a_queue_left_by_a_dead_process_is_answered_by_the_watch(
    connect, alice, private_room, backend
):
    """The server restarted with a question waiting and no answer streaming: the stale
    watch's pass answers it."""
    client = await joined(connect, private_room, alice)
    question, _ = await database_sync_to_async(services.message_post)(
        room=private_room, author=alice, text="asked before the restart"
    )
    await Message.objects.filter(pk=question.pk).aupdate(waiting=True)
    await answers.answers_resume_queues()
    done = await finished(client)
    assert done["reply_to"] == question.pk and done["text"] == "Echo: asked before the restart"
