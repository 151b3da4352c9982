"""Control events of a room's running answer: stop it, or ask it for its text so far.

The process running an answer may be another one: these go to the room's control group,
which the running answer's hub listens to (:meth:`parley.answers.runner.Answer.listen`).
"""

from __future__ import annotations

from typing import Any

from .. import protocol
from ..exceptions import LayerUnavailable, NothingToCancel
from ..models import Room
from ..realtime.db import database_call
from ..realtime.hub import get_hub
from . import records
from .approvals import answer_stop_if_waiting
from .stale import answers_interrupt_stale


async def answer_cancel_for(*, room: Room, message_id: int | None, by: str) -> int:
    """Stop the room's streaming answer on behalf of the member ``by`` (a username): the
    one with ``message_id``, or whichever streams (``None``). Returns its id.

    Closes the room's stale answer first (its process died: nothing runs it any more); an
    answer paused for an approval is stopped where it is (no process runs it either).
    Raises :class:`~parley.exceptions.NothingToCancel` when no answer streams in the room,
    or it is not ``message_id``; :class:`~parley.exceptions.LayerUnavailable` if the request
    could not reach the answer's process.
    """
    await answers_interrupt_stale(room=room)
    streaming = await database_call(records.answer_streaming, room=room)
    if streaming is None or message_id not in (None, streaming.pk):
        raise NothingToCancel("No answer is streaming in this room.")
    if not await answer_stop_if_waiting(room=room, answer=streaming):
        await answer_cancel(room=room, by=by, message_id=streaming.pk)
    return streaming.pk


async def answer_cancel(*, room: Room, by: str, message_id: int | None) -> None:
    """Ask whichever process runs the room's answer to stop it. Raises
    :class:`~parley.exceptions.LayerUnavailable` if the request could not be sent."""
    await _control(room, protocol.cancel_event(message_id=message_id, by=by))


async def answer_request_snapshot(*, room: Room, message_id: int, reply_to: dict[str, Any]) -> None:
    """Ask the process running ``message_id`` to send its text so far to ``reply_to`` (a
    hub's :meth:`~parley.realtime.hub.RoomHub.reply_address`)."""
    await _control(room, protocol.snapshot_event(message_id=message_id, reply_to=reply_to))


async def _control(room: Room, event: dict[str, Any]) -> None:
    group = room.control_group_name
    if not await get_hub().group_send(group, {**event, "group": group}):
        raise LayerUnavailable("The server could not reach the answer's process; try again.")
