"""Questions wait their turn: a question asked while the room's answer streams is answered
after it, in the order asked.

A waiting question is an ordinary stored message with ``waiting`` set (so the queue is in the
database: it survives a restart, and every process sees it). When an answer ends, the
process that ran it claims the room's oldest waiting question, with an ``UPDATE`` only one
process can win, and answers it; the stale-answer watch does the same for rooms whose
answer's process died (:func:`answers_resume_queues`). The question's poster may withdraw
it while it waits; the room holds at most ``MAX_WAITING_QUESTIONS``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import transaction

from .. import protocol
from ..conf import get_config
from ..contrib.orm import question_waiting_first
from ..exceptions import AssistantBusy, QueueFull
from ..models import Message, Room
from ..realtime.db import database_call
from ..realtime.hub import broadcast
from ..rooms.payloads import message_payload
from ..rooms.selectors import user_messages
from . import records
from .runner import answer_generate

if TYPE_CHECKING:
    from django.contrib.auth.models import _User

logger = logging.getLogger(__name__)


def question_queue(*, question: Message) -> Message:
    """Put ``question`` in its room's queue; raises :class:`QueueFull` when it holds
    ``MAX_WAITING_QUESTIONS`` already (the question stays stored, unanswered)."""
    limit = get_config().max_waiting_questions
    with transaction.atomic():
        waiting = Message.objects.filter(room_id=question.room_id, waiting=True).count()
        if waiting >= limit:
            raise QueueFull(
                f"{waiting} questions are waiting in this room, the most allowed; your message "
                "was stored without an answer. Ask again once the assistant has caught up."
            )
        Message.objects.filter(pk=question.pk).update(waiting=True)
    question.waiting = True
    return question


def question_requeue(*, question: Message) -> None:
    """Put back a question claimed too early (its room's answer had started meanwhile): it is
    the oldest again, whatever the queue's limit."""
    Message.objects.filter(pk=question.pk).update(waiting=True)
    question.waiting = True


def question_claim(*, room_id: int) -> Message | None:
    """Take the room's oldest waiting question out of the queue, to answer it now: ``None``
    if there is none, or another process took it first."""
    first = question_waiting_first(room_id=room_id)
    if first is None or not Message.objects.filter(pk=first, waiting=True).update(waiting=False):
        return None
    return Message.objects.select_related("author", "room").get(pk=first)


def question_withdraw(*, room: Room, message_id: int, user: _User | None) -> Message | None:
    """Take ``user``'s waiting question ``message_id`` out of the queue (``user`` ``None``:
    the visitor whose conversation it is); ``None`` if it is not waiting or not theirs."""
    mine = user_messages(room=room, user=user).filter(pk=message_id)
    if not mine.filter(waiting=True).update(waiting=False):
        return None
    return Message.objects.select_related("author").get(pk=message_id)


def rooms_with_waiting_questions() -> list[Room]:
    """Rooms with a waiting question and no answer streaming (its process died)."""
    streaming = Message.objects.filter(status=Message.Status.STREAMING).values("room_id")
    ids = Message.objects.filter(waiting=True).exclude(room_id__in=streaming).values("room_id")
    return list(Room.objects.filter(pk__in=ids))


async def answer_ask(*, room: Room, question: Message) -> Message | None:
    """Answer ``question`` now, or queue it behind the room's answer (then broadcast it as
    waiting, and return ``None``); raises :class:`QueueFull`."""
    try:
        return await answer_generate(room=room, question=question)
    except AssistantBusy:
        pass
    queued = await database_call(question_queue, question=question)
    await broadcast(room, protocol.message(message_payload(queued)))
    return None


async def answer_regenerate(*, room: Room, answer_id: int, by: int | None = None) -> Message:
    """Answer again the question that the room's finished answer ``answer_id`` answers: a
    new version of the first answer to it (the retry of one that failed or was cut off),
    its usage charged to the user ``by`` who asked for it.
    Raises :class:`NothingToRegenerate`, or :class:`AssistantBusy` while an answer streams
    or questions wait: they come first."""
    question, first = await database_call(
        records.answer_to_regenerate, room=room, answer_id=answer_id
    )
    return await answer_generate(room=room, question=question, version_of=first, asker_id=by)


async def answer_next(*, room: Room) -> None:
    """Answer the room's oldest waiting question, if any: its answer has just ended. Its
    members hear it is no longer waiting, then the new answer."""
    question = await database_call(question_claim, room_id=room.pk)
    if question is None:
        return
    await broadcast(room, protocol.message(message_payload(question)))
    try:
        await answer_generate(room=room, question=question)
    except AssistantBusy:  # another answer started meanwhile: back to the head of the queue
        await database_call(question_requeue, question=question)
        await broadcast(room, protocol.message(message_payload(question)))


async def answers_resume_queues() -> None:
    """Start the next answer of every room whose queue waits on nothing: its answer's
    process died, or the server restarted. Run by the stale-answer watch."""
    for room in await database_call(rooms_with_waiting_questions):
        try:
            await answer_next(room=room)
        except Exception:
            logger.exception("could not answer the waiting questions of room %s", room.pk)
