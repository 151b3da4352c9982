"""The room socket: a thin shell that parses frames, calls services and sends frames."""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from . import answers, protocol, services
from .conf import get_config
from .exceptions import AssistantBusy, PermissionDenied, ProtocolError
from .models import Message, Room

logger = logging.getLogger(__name__)

# Close codes (4000–4999 are for applications): the browser sees them and stops retrying.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class RoomConsumer(AsyncWebsocketConsumer):
    """One member's socket in one room (``/ws/rooms/<public_id>/``)."""

    room: Room | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self._refuse(
                "unauthenticated", "Log in to join this room.", CLOSE_UNAUTHENTICATED
            )
            return
        public_id = self.scope["url_route"]["kwargs"]["room"]
        ticket_room = self.scope.get("parley_ticket_room")
        try:
            if ticket_room is not None and ticket_room != public_id:
                raise PermissionDenied("This ticket is for another room.")
            self.room = await database_sync_to_async(services.room_get_for_member)(
                public_id=public_id, user=user
            )
        except PermissionDenied as exc:
            await self._refuse("forbidden", str(exc), CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(self.room.group_name, self.channel_name)
        config = get_config()
        await self._send(
            protocol.hello(
                room=services.room_payload(self.room),
                user=services.user_payload(user),
                last_seq=self.room.last_seq,
                limits={
                    "max_frame_bytes": config.max_frame_bytes,
                    "max_message_chars": config.max_message_chars,
                },
            )
        )

    async def disconnect(self, code: int) -> None:
        if self.room is not None:
            await self.channel_layer.group_discard(self.room.group_name, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.room is None:
            return
        if text_data is None:
            await self._error("binary_frame", "Frames must be JSON text, not binary.")
            return
        config = get_config()
        size = len(text_data.encode("utf-8", "surrogatepass"))
        if size > config.max_frame_bytes:
            await self._error(
                "frame_too_large",
                f"The frame is {size} bytes; the limit is {config.max_frame_bytes}.",
            )
            return
        try:
            frame = protocol.parse_client_frame(text_data, max_chars=config.max_message_chars)
        except ProtocolError as exc:
            extra = {"client_id": exc.client_id} if exc.client_id else {}
            await self._error(exc.code, exc.detail, **extra)
            return
        try:
            if isinstance(frame, protocol.Send):
                await self._on_send(frame)
            elif isinstance(frame, protocol.Cancel):
                await self._on_cancel(frame)
            else:
                await self._on_resume(frame)
        except DatabaseError:
            logger.exception("database error in room %s", self.room.pk)
            extra = {"client_id": frame.client_id} if isinstance(frame, protocol.Send) else {}
            await self._error(
                "unavailable", "The server could not reach its database; try again.", **extra
            )

    async def _on_send(self, frame: protocol.Send) -> None:
        user = self.scope["user"]
        message, created = await database_sync_to_async(services.message_post)(
            room=self.room, author=user, text=frame.text, client_id=frame.client_id
        )
        payload = services.message_payload(message)
        await self._send(
            protocol.ack(client_id=frame.client_id, message=payload, duplicate=not created)
        )
        if not created:
            return
        await answers.broadcast(self.channel_layer, self.room, protocol.message(payload))
        if frame.ask:
            try:
                await answers.answer_begin(
                    layer=self.channel_layer, room=self.room, question=message
                )
            except AssistantBusy as exc:
                await self._error(
                    "busy", f"{exc} Your message was stored.", client_id=frame.client_id
                )

    async def _on_cancel(self, frame: protocol.Cancel) -> None:
        await answers.answers_interrupt_stale(layer=self.channel_layer, room=self.room)
        streaming = await database_sync_to_async(services.answer_streaming)(room=self.room)
        if streaming is None or frame.message_id not in (None, streaming.pk):
            await self._error("nothing_to_cancel", "No answer is streaming in this room.")
            return
        await answers.answer_cancel(
            layer=self.channel_layer,
            room=self.room,
            by=self.scope["user"].get_username(),
            message_id=streaming.pk,
        )

    async def _on_resume(self, frame: protocol.Resume) -> None:
        await answers.answers_interrupt_stale(layer=self.channel_layer, room=self.room)
        messages, more = await database_sync_to_async(services.messages_after)(
            room=self.room, after=frame.after
        )
        last_seq = messages[-1].seq if messages else frame.after
        await self._send(
            protocol.history(
                messages=[services.message_payload(m) for m in messages],
                more=more,
                last_seq=last_seq,
            )
        )
        for message in messages:
            if message.status == Message.Status.STREAMING:
                await answers.answer_request_snapshot(
                    layer=self.channel_layer,
                    room=self.room,
                    message_id=message.pk,
                    reply_to=self.channel_name,
                )

    async def dispatch(self, message: dict[str, Any]) -> None:
        # The room's frames are the hot path (one per member per message) and touch no
        # database: skip the base class's per-message close_old_connections thread hop.
        # Handlers that do use the ORM go through database_sync_to_async, which closes old
        # connections itself.
        if message["type"] == "parley.frame":
            await self.parley_frame(message)
        else:
            await super().dispatch(message)

    async def parley_frame(self, event: dict[str, Any]) -> None:
        """A frame for the room, already serialised by whoever sent it."""
        await self.send(text_data=event["frame"])

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=protocol.encode(frame))

    async def _error(self, code: str, detail: str, **extra: Any) -> None:
        await self._send(protocol.error(code, detail, **extra))

    async def _refuse(self, code: str, detail: str, close_code: int) -> None:
        await self._error(code, detail)
        await self.close(code=close_code)
