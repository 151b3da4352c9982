"""Running assistant answers. An answer belongs to its room, not to the socket that asked.

Each answer runs as a task of the server process that accepted the question. It listens on a
channel of its own, joined to the room's control group, so that a member connected to any
process can stop it or ask for the text so far. Deltas go to the room group, coalesced: the
first at once, later ones every ``STREAM_FLUSH_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer

from . import protocol, services
from .backends import get_backend
from .conf import get_config
from .exceptions import BackendError
from .models import Message, Room

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

# Strong references to running answers (asyncio keeps only weak ones), with their tasks.
_running: dict[int, tuple[Answer, asyncio.Task[None]]] = {}

SHUTDOWN = "shutdown"


def frame_event(frame: dict[str, Any], **address: Any) -> dict[str, Any]:
    """A channel-layer event carrying one server frame, serialised once for every member;
    ``address`` says for whom (``group=``: a room's members, ``to=``: one member)."""
    return {"type": "parley.frame", "frame": protocol.encode(frame), **address}


async def broadcast(room: Room, frame: dict[str, Any]) -> None:
    """Send ``frame`` to every member of ``room``, in every process (each process's hub
    hands it to its own members)."""
    layer = get_channel_layer()
    await layer.group_send(room.group_name, frame_event(frame, group=room.group_name))


class Answer:
    """One answer being generated; see :func:`answer_begin`."""

    def __init__(self, *, layer: BaseChannelLayer, room: Room, message: Message) -> None:
        self.layer = layer
        self.room = room
        self.message = message
        self.parts: list[str] = []
        self.sent = 0  # characters already sent to the room as deltas
        self.channel = ""  # set by listen()
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def listen(self) -> None:
        """Join the room's control group. Done before the answer is announced, so that a stop
        pressed as soon as it appears is not lost (it waits in the channel until read)."""
        self.channel = await self.layer.new_channel("parley.answer.")
        await self.layer.group_add(self.room.control_group_name, self.channel)

    async def run(self) -> None:
        config = get_config()
        channel = self.channel
        helpers = [
            asyncio.create_task(self._control(channel)),
            asyncio.create_task(self._heartbeat(config.stream_persist_interval)),
        ]
        try:
            status, error = await self._generate(config.stream_flush_interval)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self.layer.group_discard(self.room.control_group_name, channel)
        final = await database_sync_to_async(services.answer_finish)(
            message_id=self.message.pk, text=self.text, status=status, error=error
        )
        await broadcast(self.room, protocol.done(services.message_payload(final)))
        if status == Message.Status.FAILED:
            await broadcast(
                self.room,
                protocol.error("assistant_failed", error, message_id=final.pk),
            )
        logger.info(
            "answer %s in room %s: %s, %d characters",
            final.pk,
            self.room.pk,
            status,
            len(self.text),
        )

    async def _generate(self, flush_interval: float) -> tuple[str, str]:
        pump = asyncio.create_task(self._pump(flush_interval))
        self.task = pump
        try:
            await pump
        except asyncio.CancelledError:
            if self.stop_reason is None:  # not ours: the process is going down
                raise
            if self.stop_reason == SHUTDOWN:
                return Message.Status.INTERRUPTED, "The server restarted during this answer."
            return Message.Status.CANCELLED, ""
        except BackendError as exc:
            return Message.Status.FAILED, str(exc)
        except Exception:
            logger.exception("assistant backend failed in room %s", self.room.pk)
            return Message.Status.FAILED, "The assistant failed unexpectedly."
        finally:
            await self._flush()
        return Message.Status.COMPLETE, ""

    async def _pump(self, flush_interval: float) -> None:
        backend = get_backend(self.room.backend)
        request = await database_sync_to_async(services.answer_request)(answer=self.message)
        last_flush = time.monotonic()
        flusher: asyncio.Task[None] | None = None
        stream = backend.stream(request)
        try:
            async for piece in stream:
                if not piece:
                    continue
                self.parts.append(piece)
                if self.sent == 0 and len(self.parts) == 1:
                    await self._flush()  # the first delta goes out at once
                    last_flush = time.monotonic()
                elif flusher is None or flusher.done():
                    delay = max(0.0, flush_interval - (time.monotonic() - last_flush))
                    flusher = asyncio.create_task(self._flush_later(delay))
                    last_flush = time.monotonic() + delay
        finally:
            # Closing the generator closes the upstream request: nothing more is generated.
            await stream.aclose()
            if flusher is not None:
                flusher.cancel()

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._flush()

    async def _flush(self) -> None:
        text = self.text
        if len(text) <= self.sent:
            return
        chunk, offset = text[self.sent :], self.sent
        self.sent = len(text)
        await broadcast(
            self.room,
            protocol.delta(message_id=self.message.pk, offset=offset, text=chunk),
        )

    def stop(self, reason: str) -> None:
        """Stop generating: ``reason`` is who pressed stop, or :data:`SHUTDOWN`."""
        if self.task is not None and not self.task.done() and self.stop_reason is None:
            self.stop_reason = reason
            self.task.cancel()

    async def _heartbeat(self, interval: float) -> None:
        """Save the text so far every ``interval`` seconds. The write's timestamp tells other
        processes this answer is alive; see :func:`parley.services.answers_interrupt_stale`."""
        while True:
            await asyncio.sleep(interval)
            await database_sync_to_async(services.answer_save_progress)(
                message_id=self.message.pk, text=self.text
            )

    async def _control(self, channel: str) -> None:
        """Serve the room's control group: cancel requests and snapshot requests."""
        while True:
            event = await self.layer.receive(channel)
            kind = event.get("type")
            target = event.get("message_id")
            if target not in (None, self.message.pk):
                continue
            if kind == "parley.cancel":
                self.stop(event.get("by") or "?")
            elif kind == "parley.snapshot":
                # The whole text so far as a delta at offset 0: the asker replaces its copy.
                snapshot = protocol.delta(message_id=self.message.pk, offset=0, text=self.text)
                reply_to = event["reply_to"]
                await self.layer.send(reply_to["channel"], frame_event(snapshot, to=reply_to["to"]))


async def answer_begin(*, layer: BaseChannelLayer, room: Room, question: Message) -> Message:
    """Open an answer to ``question`` and start generating it in the background.

    Returns the stored streaming message once it has been broadcast. Raises
    :class:`parley.exceptions.AssistantBusy` if the room already has an answer streaming.
    The answer goes on if the asker disconnects; any member stops it with :func:`answer_cancel`.
    """
    await answers_interrupt_stale(room=room)
    message = await database_sync_to_async(services.answer_start)(
        room=room, reply_to=question, worker=WORKER_ID
    )
    answer = Answer(layer=layer, room=room, message=message)
    await answer.listen()
    await broadcast(room, protocol.message(services.message_payload(message)))
    task = asyncio.create_task(answer.run(), name=f"parley-answer-{message.pk}")
    _running[message.pk] = (answer, task)
    task.add_done_callback(lambda _: _running.pop(message.pk, None))
    return message


async def answer_cancel(
    *, layer: BaseChannelLayer, room: Room, by: str, message_id: int | None
) -> None:
    """Ask whichever process runs the room's answer to stop it."""
    await layer.group_send(
        room.control_group_name, {"type": "parley.cancel", "message_id": message_id, "by": by}
    )


async def answer_request_snapshot(
    *, layer: BaseChannelLayer, room: Room, message_id: int, reply_to: dict[str, Any]
) -> None:
    """Ask the process running ``message_id`` to send its text so far to ``reply_to`` (a
    hub's :meth:`~parley.hub.RoomHub.reply_address`)."""
    await layer.group_send(
        room.control_group_name,
        {"type": "parley.snapshot", "message_id": message_id, "reply_to": reply_to},
    )


async def answers_interrupt_stale(*, room: Room) -> None:
    """Close the room's answers whose process stopped sending heartbeats (it crashed or was
    killed) as ``interrupted``, and tell the room."""
    for message in await database_sync_to_async(services.answers_interrupt_stale)(room=room):
        await broadcast(room, protocol.done(services.message_payload(message)))


async def answers_shutdown(timeout: float = 5.0) -> None:
    """Stop every answer of this process as ``interrupted`` and wait until each is stored
    and announced. Called when the server shuts down."""
    running = list(_running.values())
    for answer, _ in running:
        answer.stop(SHUTDOWN)
    if running:
        await asyncio.wait([task for _, task in running], timeout=timeout)
        logger.info("interrupted %d running answer(s) at shutdown", len(running))


def answers_running() -> list[int]:
    """Ids of the answers this process is generating."""
    return list(_running)
