"""The room socket: a thin shell that parses frames, calls services and sends frames."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import sys
from typing import TYPE_CHECKING, Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from . import access, answers, auth, protocol, services
from .conf import get_config
from .db import database_call
from .exceptions import (
    AssistantBusy,
    LayerUnavailable,
    NotAuthenticated,
    ProtocolError,
    RoomPermissionDenied,
)
from .hub import Outbox, get_hub
from .models import Message, Room
from .throttling import TokenBucket, make_bucket, resume_buckets, user_buckets

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User

logger = logging.getLogger(__name__)

# Close codes. After 4401 and 4403 the browser stops retrying; after the others it reconnects.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4008  # the client stopped reading: its backlog passed MAX_BACKLOG(_BYTES)
CLOSE_RATE_LIMITED = 4029  # flooding past a rate limit, or one socket too many for the user
CLOSE_TRY_AGAIN = 1013  # the server cannot reach its channel layer yet

_tokens = itertools.count(1)  # ids of this process's sockets, for frames meant for one


class RoomConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels has no types
    """One member's socket in one room (``/ws/rooms/<public_id>/``).

    It has no channel-layer channel of its own: the process's :class:`~parley.hub.RoomHub`
    joins the room's group once and delivers the room's frames to every local member.
    """

    # room, user and grant are None until connect() admits the socket; a socket that has
    # joined (the only kind whose frames are handled and which the hub calls) has them all.
    room: Room | None = None
    user: _User | None = None
    grant: access.Grant | None = None  # what the socket was admitted with
    revoked = False  # its rights ended while it was open
    outbox: Outbox  # made by __call__, before anything else runs
    joined = False
    frame_bucket: TokenBucket | None = None
    strikes = 0  # frames refused in a row by a rate limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels' loop would also wait on a per-socket layer channel (one task and one
        # asyncio.wait per frame).
        self.scope = scope
        self.base_send = send
        self.token = next(_tokens)
        config = get_config()
        self.outbox = Outbox(
            send,
            limit=config.max_backlog,
            max_bytes=config.max_backlog_bytes,
            size=_text_size,
            on_overflow=self._overflow,
            on_error=self._send_failed,
        )
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            await self._leave()

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """Channels' ``as_asgi``, except that the application returns the consumer's
        coroutine instead of awaiting it: one coroutine less kept per open socket."""

        def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
            return cls(**initkwargs)(scope, receive, send)

        # What Channels' URLRouter reads off the application: attributes a function lacks.
        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        return functools.update_wrapper(app, cls, updated=())

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch first hops to a thread to close stale database connections: a
        # second hop for every frame that posts a message, one for frames that need no
        # database at all. Our handlers reach the ORM through database_call, which does it.
        await getattr(self, get_handler_name(message))(message)

    def deliver(self, frame: str) -> None:
        """Called by the hub for each of the room's frames."""
        if not self.revoked:
            self.outbox.put({"type": "websocket.send", "text": frame})

    def on_access(self, event: dict[str, Any]) -> None:
        """Called by the hub for each revocation event of the socket's user."""
        assert self.grant is not None  # the hub calls only members that joined
        refusal = access.revocation(event, self.grant)
        if refusal is not None:
            self.revoke(*refusal)

    def revoke(self, code: str, detail: str, close_code: int) -> None:
        """The socket lost its rights: from now on it receives nothing of the room and the
        frames it sends do nothing; it is told why and closed."""
        if self.revoked:
            return
        self.revoked = True
        assert self.room is not None and self.user is not None  # the hub calls only members
        logger.info("room %s: a socket of user %s lost its rights (%s)", self.room.pk,
                    self.user.pk, code)  # fmt: skip
        asyncio.ensure_future(self._leave())  # if it has not joined yet, connect() leaves
        if self.outbox.backlogged:  # it is not reading: what waits for it goes nowhere
            self.outbox.close()
            asyncio.ensure_future(self.close(code=close_code))
            return
        frame = protocol.encode(protocol.error(code, detail))
        self.outbox.put({"type": "websocket.send", "text": frame})
        self.outbox.put({"type": "websocket.close", "code": close_code})

    def _send_failed(self, exc: Exception) -> None:
        if not isinstance(exc, OSError):  # OSError: the client went (uvicorn's ClientDisconnected)
            logger.error(
                "room %s: a frame could not be sent", self.room and self.room.pk, exc_info=exc
            )

    def _overflow(self, backlog: object) -> None:
        logger.warning("room %s: a client stopped reading; closing it", self.room and self.room.pk)
        self.outbox.close()
        asyncio.ensure_future(self._leave())
        asyncio.ensure_future(self.close(code=CLOSE_TOO_SLOW))

    async def _leave(self) -> None:
        if self.room is not None and self.joined:
            self.joined = False
            assert self.user is not None  # admitted with its room
            await get_hub().leave(self.room.group_name, self, self.token, user=str(self.user.pk))

    async def connect(self) -> None:
        refusal = None
        try:
            self.user, self.room, grant = await database_call(
                auth.socket_admit, self.scope, room=self.scope["url_route"]["kwargs"]["room"]
            )
        except NotAuthenticated as exc:
            refusal = ("unauthenticated", str(exc), CLOSE_UNAUTHENTICATED)
        except RoomPermissionDenied as exc:
            refusal = ("forbidden", str(exc), CLOSE_FORBIDDEN)
        # Accepted after the database hop, not before: measured 1.3 KiB less per idle socket
        # (bench/README.md). A refused socket is accepted too, to be told why.
        await self.accept()
        if refusal is not None:
            await self._refuse(*refusal)
            return
        assert self.room is not None and self.user is not None  # admitted
        hub = get_hub()
        cap = get_config().rate_limits["SOCKETS_PER_USER"]
        if cap is not None and hub.user_sockets(grant.user_key) >= cap:
            await self._refuse(
                "too_many_sockets",
                f"You have {cap} sockets open on this server, the most allowed; close one.",
                CLOSE_RATE_LIMITED,
            )
            return
        self.grant = grant  # join() counts it before it suspends (but for the layer's first start)
        try:
            await hub.join(self.room.group_name, self, self.token, user=grant.user_key)
        except LayerUnavailable:
            await self._refuse(
                "unavailable", "The server cannot reach its channel layer; retrying.",
                CLOSE_TRY_AGAIN,
            )  # fmt: skip
            return
        self.joined = True
        if self.revoked:  # while it joined: revoke() found nothing to leave yet
            await self._leave()
            return
        config = get_config()
        self.frame_bucket = make_bucket(config.rate_limits["CONNECTION"])
        await self._send(
            protocol.hello(
                room=services.room_payload(self.room),
                user=services.user_payload(self.user),
                last_seq=self.room.last_seq,
                limits={
                    "max_frame_bytes": config.max_frame_bytes,
                    "max_message_chars": config.max_message_chars,
                },
            )
        )

    async def disconnect(self, code: int) -> None:
        if self.outbox is not None:
            self.outbox.close()
        await self._leave()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.joined or self.revoked:  # not admitted, or its rights are gone
            return
        assert self.room is not None and self.user is not None  # joined
        if self.frame_bucket is not None and not self.frame_bucket.take():
            await self._limited(self.frame_bucket, "You are sending frames too fast.")
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
        if isinstance(frame, protocol.Send):
            bucket = user_buckets.get(self.user.pk, config.rate_limits["USER"])
            if bucket is not None and not bucket.take():
                await self._limited(
                    bucket, "You are posting messages too fast.", client_id=frame.client_id
                )
                return
        elif isinstance(frame, protocol.Resume):
            bucket = resume_buckets.get(self.user.pk, config.rate_limits["RESUME"])
            if bucket is not None and not bucket.take():
                # `after` tells the client which resume to send again after retry_after.
                await self._limited(
                    bucket, "You are asking for history too fast.", after=frame.after
                )
                return
        self.strikes = 0
        extra = {"client_id": frame.client_id} if isinstance(frame, protocol.Send) else {}
        try:
            if isinstance(frame, protocol.Send):
                await self._on_send(frame)
            elif isinstance(frame, protocol.Cancel):
                await self._on_cancel(frame)
            else:
                await self._on_resume(frame)
        except DatabaseError:
            logger.exception("database error in room %s", self.room.pk)
            await self._error(
                "unavailable", "The server could not reach its database; try again.", **extra
            )
        except Exception:  # a bug: say so, and keep the socket (and the room) going
            logger.exception(
                "error handling a %s frame in room %s", type(frame).__name__, self.room.pk
            )
            await self._error("internal_error", "The server failed to handle this frame.", **extra)

    async def _on_send(self, frame: protocol.Send) -> None:
        assert self.room is not None and self.user is not None  # joined
        message, created = await database_call(
            services.message_post,
            room=self.room,
            author=self.user,
            text=frame.text,
            client_id=frame.client_id,
        )
        payload = services.message_payload(message)
        await self._send(
            protocol.ack(client_id=frame.client_id, message=payload, duplicate=not created)
        )
        if not created:
            return
        await answers.broadcast(self.room, protocol.message(payload))
        if frame.ask:
            try:
                await answers.answer_generate(room=self.room, question=message)
            except AssistantBusy as exc:
                await self._error(
                    "busy", f"{exc} Your message was stored.", client_id=frame.client_id
                )

    async def _on_cancel(self, frame: protocol.Cancel) -> None:
        assert self.room is not None and self.user is not None  # joined
        await answers.answers_interrupt_stale(room=self.room)
        streaming = await database_call(services.answer_streaming, room=self.room)
        if streaming is None or frame.message_id not in (None, streaming.pk):
            await self._error("nothing_to_cancel", "No answer is streaming in this room.")
            return
        try:
            await answers.answer_cancel(
                room=self.room, by=self.user.get_username(), message_id=streaming.pk
            )
        except LayerUnavailable as exc:
            await self._error("unavailable", str(exc))

    async def _on_resume(self, frame: protocol.Resume) -> None:
        assert self.room is not None  # joined
        await answers.answers_interrupt_stale(room=self.room)
        messages, more = await database_call(
            services.messages_after, room=self.room, after=frame.after
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
                # If the layer is down, the sync frame sent once it is back brings a new resume.
                with contextlib.suppress(LayerUnavailable):
                    await answers.answer_request_snapshot(
                        room=self.room,
                        message_id=message.pk,
                        reply_to=get_hub().reply_address(self.token),
                    )

    async def _send(self, frame: dict[str, Any]) -> None:
        # Through the outbox, so that replies keep their order with the room's frames.
        if not self.revoked:  # a revoked socket has had its last frame
            self.outbox.put({"type": "websocket.send", "text": protocol.encode(frame)})

    async def _error(self, code: str, detail: str, **extra: Any) -> None:
        await self._send(protocol.error(code, detail, **extra))

    async def _limited(self, bucket: TokenBucket, detail: str, **extra: Any) -> None:
        """Refuse a frame over a rate limit; close the socket if the client keeps flooding."""
        self.strikes += 1
        if self.strikes > get_config().rate_limits["STRIKES"]:
            assert self.room is not None  # only a joined socket's frames are limited
            logger.warning("room %s: closing a socket that kept flooding", self.room.pk)
            await self._leave()
            await self._refuse(
                "rate_limited", "Too many frames past the rate limit.", CLOSE_RATE_LIMITED
            )
            return
        wait = bucket.retry_after()
        await self._error(
            "rate_limited",
            f"{detail} Try again in {wait:.1f} s.",
            retry_after=round(wait, 3),
            **extra,
        )

    async def _refuse(self, code: str, detail: str, close_code: int) -> None:
        await self._error(code, detail)
        await self.close(code=close_code)


def _text_size(message: dict[str, Any]) -> int:
    """The memory a queued ``websocket.send`` holds: its text (1, 2 or 4 bytes a character);
    nothing to count for a ``websocket.close``."""
    text = message.get("text")
    return 0 if text is None else sys.getsizeof(text)
