"""The ``rate`` frame's handler, registered with :func:`parley.realtime.handlers.handles`
when the app is ready (parley/apps.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import protocol
from ..realtime.db import database_call
from ..realtime.handlers import Limit, handles, user_limit
from ..throttling import feedback_buckets
from .payloads import feedback_payload
from .services import FeedbackRefused, feedback_give

if TYPE_CHECKING:
    from ..realtime.consumers import RoomConsumer


def _rate_limit(socket: RoomConsumer, frame: protocol.Rate) -> Limit | None:
    """A token of the sender's (user's or visitor's) ``RATE_LIMITS["FEEDBACK"]`` bucket."""
    detail = "You are giving feedback too fast."
    return user_limit(socket, feedback_buckets, "FEEDBACK", detail, frame.reply_fields())


@handles(protocol.Rate, limit=_rate_limit)
async def handle_rate(socket: RoomConsumer, frame: protocol.Rate) -> None:
    """Store the sender's feedback on an answer and tell the sending socket what is stored
    now. Nobody else is told: feedback is personal, even in a shared room (the sender's
    other tabs show it after their next reload)."""
    room, grant = socket.room, socket.grant
    assert room is not None and grant is not None  # joined
    try:
        feedback = await database_call(
            feedback_give, room=room, answer_id=frame.message_id, user=socket.user,
            visitor=grant.visitor, rating=frame.rating, comment=frame.comment,
        )  # fmt: skip
    except FeedbackRefused as exc:
        socket.reply_error(exc.code, str(exc), **frame.reply_fields())
        return
    socket.reply(protocol.feedback(message_id=frame.message_id, given=feedback_payload(feedback)))
