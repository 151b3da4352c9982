"""An answer paused on a tool call that waits for approval, and how it goes on.

The pause is rows (:mod:`parley.tools.approvals`): no task waits, so it survives the asker's
reconnects and a restart or a crash of the server. The process a decision comes to goes on
with the answer, as does the one whose watch finds a wait expired; a stop pressed while it
waits ends it where it is, without a process to send a stop to.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import protocol
from ..models import Message, Room, ToolRun
from ..realtime.db import database_call
from ..realtime.hub import broadcast
from ..rooms.payloads import message_payload
from ..tools.approvals import Decision, answer_stop_waiting, approval_decide, approvals_expire
from . import records
from .queue import answer_next
from .runner import WORKER_ID, Answer, answer_start, tool_step_tell

if TYPE_CHECKING:
    from django.contrib.auth.models import _User

logger = logging.getLogger(__name__)


async def answer_decide(
    *, room: Room, user: _User | None, run_id: int, decision: Decision
) -> ToolRun:
    """Take ``user``'s ``decision`` on the room's pending call ``run_id``, tell the room, and
    go on with its answer in this process. Raises
    :class:`~parley.tools.approvals.DecisionRefused` when the decision cannot be taken."""
    # Listening before the row is won, keeping what comes until the answer is known: a
    # stop pressed as the decision is stored is not lost (the stop finds no call waiting,
    # and sends a stop to whoever runs the answer: this process, from the decision on).
    answer = Answer(room=room)
    answer.expect_resume()
    await answer.listen()
    try:
        run = await database_call(
            approval_decide,
            run_id=run_id,
            room_id=room.pk,
            user=user,
            decision=decision,
            worker=WORKER_ID,
        )
    except BaseException:
        await answer.unlisten()
        raise
    await _go_on(answer, run)
    return run


async def approvals_expire_due() -> None:
    """Deny the calls that waited for approval too long, and go on with their answers (the
    model is told). Run by the stale-answer watch of every process: one wins each."""
    for run in await database_call(approvals_expire, worker=WORKER_ID):
        answer = Answer(room=run.answer.room)
        try:
            await answer.listen()
            await _go_on(answer, run)
        except Exception:  # the layer is away: the watch closes it as interrupted
            logger.exception("answer %s could not go on after its expired call", run.answer_id)


async def _go_on(answer: Answer, run: ToolRun) -> None:
    logger.info("tool call %s of answer %s: %s", run.pk, run.answer_id, run.status)
    await tool_step_tell(answer.room, run)
    answer.resume(run.answer)
    answer_start(answer)


async def answer_stop_if_waiting(*, room: Room, answer: Message) -> bool:
    """Stop ``answer`` if it is paused on an approval: its waiting calls are cancelled, the
    answer ends ``cancelled`` with its text so far, and the room's next question is
    answered. ``False`` if it is not waiting (a process runs it: send it a stop)."""
    cancelled = await database_call(answer_stop_waiting, answer=answer)
    if cancelled is None:
        return False
    final = await database_call(
        records.answer_finish,
        answer=answer,
        text=answer.text,
        status=Message.Status.CANCELLED,
        model=answer.model,
        called_tools=True,
    )
    for run in cancelled:
        await tool_step_tell(room, run)
    await broadcast(room, protocol.done(message_payload(final)))
    logger.info("answer %s stopped while it waited for approval", answer.pk)
    await answer_next(room=room)
    return True
