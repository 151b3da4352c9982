"""The stale-answer watch: answers whose process died (no heartbeat for
``ANSWER_STALE_AFTER``) are closed as ``interrupted``, so that their room is free again, and
the questions waiting behind them are answered; answers paused on an approval that expired
go on, denied."""

from __future__ import annotations

import asyncio
import logging

from .. import protocol
from ..conf import get_config
from ..models import Room
from ..realtime.db import database_call
from ..realtime.hub import broadcast
from ..rooms.payloads import message_payload
from . import records
from .approvals import approvals_expire_due
from .queue import answers_resume_queues

logger = logging.getLogger(__name__)


async def answers_interrupt_stale(*, room: Room | None = None) -> None:
    """Close the answers (of ``room``, or of every room) whose process stopped sending
    heartbeats (it crashed or was killed) as ``interrupted``, and tell their rooms."""
    for message in await database_call(records.answers_mark_stale, room=room):
        await broadcast(message.room, protocol.done(message_payload(message)))


async def answers_watch(interval: float | None = None) -> None:
    """Every ``interval`` seconds (half of ``ANSWER_STALE_AFTER``), close the answers of dead
    processes, so that no answer stays ``streaming`` until someone happens to look. Runs for
    as long as the server does (see :mod:`parley.lifespan`); every process may run it."""
    while True:
        await asyncio.sleep(interval or get_config().answer_stale_after / 2)
        try:
            await answers_interrupt_stale()
            await answers_resume_queues()  # their rooms' waiting questions, and a restart's
            await approvals_expire_due()
        except Exception:  # the database or the layer is away: next round
            logger.exception("could not check for answers of dead processes")
