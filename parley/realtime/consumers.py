"""The room socket: a thin shell that parses frames, calls services and sends frames."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import sys
from typing import TYPE_CHECKING, Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from .. import metrics, protocol
from ..conf import get_config
from ..exceptions import LayerUnavailable, NotAuthenticated, ProtocolError, RoomPermissionDenied
from ..models import Room
from ..protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
)
from ..rooms import payloads
from ..throttling import TokenBucket, make_bucket
from . import access, auth, handlers
from .db import database_call
from .hub import get_hub
from .outbox import Outbox

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User

logger = logging.getLogger(__name__)

socket_tokens = itertools.count(1)  # ids of this process's sockets, for frames meant for one
# Seconds a socket being closed has to read the frames queued before its close (the error
# frame saying why); one that reads nothing meanwhile is closed without them.
CLOSE_GRACE = 5.0


class RoomConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels has no types
    """One member's socket in one room (``/ws/rooms/<public_id>/``).

    It has no channel-layer channel of its own: the process's
    :class:`~parley.realtime.hub.RoomHub` joins the room's group once and delivers the room's
    frames to every local member. Each client frame goes to the handler of its type
    (:mod:`parley.realtime.handlers`).

    Every close goes through the write queue after the frames before it (the error frame
    saying why), but for a client that stopped reading: its queue is dropped, then it is
    closed.
    """

    # room and grant are None until connect() admits the socket; a socket that has joined
    # (the only kind whose frames are handled and which the hub calls) has both, and a user
    # unless it is a visitor's (grant.visitor).
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
        self.token = next(socket_tokens)
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
        assert self.room is not None and self.grant is not None  # the hub calls only members
        logger.info("room %s: a socket of %s lost its rights (%s)", self.room.pk,
                    self.grant.user_key, code)  # fmt: skip
        asyncio.ensure_future(self._leave())  # if it has not joined yet, connect() leaves
        self._tell_and_close(code, detail, close_code)

    def _tell_and_close(self, code: str, detail: str, close_code: int) -> None:
        """Send an ``error`` frame saying why, then close: the close waits in the outbox
        behind it (and any frame before it) instead of overtaking them. A client that reads
        slowly gets ``CLOSE_GRACE`` seconds to take them; one that reads nothing would never
        get that far, so then what waits is dropped and it is closed all the same."""
        metrics.error_frames.labels(code).inc()
        metrics.sockets_closed.labels(str(close_code)).inc()
        frame = protocol.encode(protocol.error(code, detail))
        self.outbox.put({"type": "websocket.send", "text": frame})
        self.outbox.finish({"type": "websocket.close", "code": close_code})
        if self.outbox.backlogged:
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self._close_if_stuck, close_code)

    def _close_if_stuck(self, close_code: int) -> None:
        if self.outbox.backlogged:  # the frames before the close are still not written
            self.outbox.close()
            asyncio.ensure_future(self.close(code=close_code))

    def _send_failed(self, exc: Exception) -> None:
        if not isinstance(exc, OSError):  # OSError: the client went (uvicorn's ClientDisconnected)
            logger.error(
                "room %s: a frame could not be sent", self.room and self.room.pk, exc_info=exc
            )

    def _overflow(self, backlog: object) -> None:
        logger.warning("room %s: a client stopped reading; closing it", self.room and self.room.pk)
        metrics.sockets_closed.labels(str(CLOSE_TOO_SLOW)).inc()
        self.outbox.close()
        asyncio.ensure_future(self._leave())
        asyncio.ensure_future(self.close(code=CLOSE_TOO_SLOW))

    async def _leave(self) -> None:
        if self.room is not None and self.joined:
            self.joined = False
            assert self.grant is not None  # admitted with its room
            await get_hub().leave(self.room.group_name, self, self.token, user=self.grant.user_key)

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
        assert self.room is not None  # admitted
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
        self.reply(
            protocol.hello(
                room=payloads.room_payload(self.room),
                user=payloads.user_payload(self.user) or payloads.visitor_payload(),
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
        assert self.room is not None  # joined
        if self.frame_bucket is not None and not self.frame_bucket.take():
            await self._limited(self.frame_bucket, "You are sending frames too fast.")
            return
        if text_data is None:
            self.reply_error("binary_frame", "Frames must be JSON text, not binary.")
            return
        config = get_config()
        size = len(text_data.encode("utf-8", "surrogatepass"))
        if size > config.max_frame_bytes:
            self.reply_error(
                "frame_too_large",
                f"The frame is {size} bytes; the limit is {config.max_frame_bytes}.",
            )
            return
        try:
            frame = protocol.parse_client_frame(text_data, max_chars=config.max_message_chars)
        except ProtocolError as exc:
            extra = {"client_id": exc.client_id} if exc.client_id else {}
            self.reply_error(exc.code, exc.detail, **extra)
            return
        handler = handlers.handler_for(frame)
        over = handler.limit(self, frame) if handler.limit is not None else None
        if over is not None:
            await self._limited(over.bucket, over.detail, **over.extra)
            return
        self.strikes = 0
        try:
            await handler.handle(self, frame)
        except DatabaseError:
            logger.exception("database error in room %s", self.room.pk)
            self.reply_error(
                "unavailable",
                "The server could not reach its database; try again.",
                **frame.reply_fields(),
            )
        except Exception:  # a bug: say so, and keep the socket (and the room) going
            logger.exception(
                "error handling a %s frame in room %s", type(frame).__name__, self.room.pk
            )
            self.reply_error(
                "internal_error", "The server failed to handle this frame.", **frame.reply_fields()
            )

    def reply(self, frame: dict[str, Any]) -> None:
        """Send ``frame`` to this socket's client, through the outbox, so that replies keep
        their order with the room's frames."""
        if not self.revoked:  # a revoked socket has had its last frame
            self.outbox.put({"type": "websocket.send", "text": protocol.encode(frame)})

    def reply_error(self, code: str, detail: str, **extra: Any) -> None:
        """Send an ``error`` frame (``extra``: fields that say what it refers to)."""
        metrics.error_frames.labels(code).inc()
        self.reply(protocol.error(code, detail, **extra))

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
        self.reply_error(
            "rate_limited",
            f"{detail} Try again in {wait:.1f} s.",
            retry_after=round(wait, 3),
            **extra,
        )

    async def _refuse(self, code: str, detail: str, close_code: int) -> None:
        """Tell the client why, then close (see :meth:`_tell_and_close`)."""
        self._tell_and_close(code, detail, close_code)


def _text_size(message: dict[str, Any]) -> int:
    """The memory a queued ``websocket.send`` holds: its text (1, 2 or 4 bytes a character);
    nothing to count for a ``websocket.close``."""
    text = message.get("text")
    return 0 if text is None else sys.getsizeof(text)
