"""One handler per client frame type, as Channels maps event types to methods.

:func:`handles` registers a coroutine for a frame class of :mod:`parley.protocol` under its
``type``; :class:`~parley.realtime.consumers.RoomConsumer` looks the parsed frame up in
:data:`HANDLERS` and awaits its handler. A new frame type is a frame class with its parser
(parley/protocol/frames.py) and a handler here: the consumer does not change.

A handler may name the rate limit its frames count against (``limit=``): the consumer takes
a token before the handler runs and refuses the frame without one, striking the socket as
for any limit. Handlers reply through the socket's write queue (``socket.reply``), so replies
keep their order with the room's frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .. import answers, protocol
from ..conf import get_config
from ..exceptions import (
    AssistantBusy,
    LayerUnavailable,
    NotEditable,
    NothingToCancel,
    NothingToRegenerate,
    QueueFull,
    QuotaExceeded,
)
from ..feedback.history import feedback_attach
from ..models import Message
from ..rooms import payloads, selectors, services
from ..throttling import (
    TokenBucket,
    UserBuckets,
    address_buckets,
    resume_buckets,
    user_buckets,
    visitor_buckets,
)
from ..tools.approvals import Decision, DecisionRefused
from ..usage.quotas import quota_return, quota_take, quotas_in_force, quotas_known
from ..visitors.addresses import client_address
from ..visitors.services import visitor_quota_take
from .db import database_call
from .hub import broadcast, broadcast_now, get_hub
from .posting import post_queue

if TYPE_CHECKING:
    from .consumers import RoomConsumer

F = TypeVar("F", bound=protocol.ClientFrame)
Handle = Callable[["RoomConsumer", F], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Limit:
    """A frame over its rate limit: the bucket that had no token, and what to tell the client
    (``extra``: fields the error frame repeats, so the client knows what to send again)."""

    bucket: TokenBucket
    detail: str
    extra: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Handler:
    """What a frame type maps to: its coroutine, and the check of its own rate limit (which
    takes a token and returns the :class:`Limit` passed, or None when the frame may go on)."""

    handle: Handle[Any]
    limit: Callable[[RoomConsumer, Any], Limit | None] | None = None


HANDLERS: dict[str, Handler] = {}


def handles(
    frame_class: type[F], *, limit: Callable[[RoomConsumer, F], Limit | None] | None = None
) -> Callable[[Handle[F]], Handle[F]]:
    """Register the decorated coroutine ``handler(socket, frame)`` for ``frame_class``'s
    frames (its ``type``). One handler per type: registering a second raises ``ValueError``."""
    kind = frame_class.type

    def register(handle: Handle[F]) -> Handle[F]:
        if kind in HANDLERS:
            raise ValueError(f"{kind!r} frames already have a handler")
        HANDLERS[kind] = Handler(handle, limit)
        return handle

    return register


def handler_for(frame: protocol.ClientFrame) -> Handler:
    """The handler of ``frame``'s type (every frame the protocol parses has one)."""
    return HANDLERS[frame.type]


def user_limit(
    socket: RoomConsumer, buckets: UserBuckets, limit: str, detail: str, extra: dict[str, Any]
) -> Limit | None:
    """Take a token from the socket's user's (or visitor's) bucket for
    ``RATE_LIMITS[limit]``: ``None`` if there was one (or the limit is off), else the
    :class:`Limit` to refuse the frame with. For the ``limit=`` of any handler's frames,
    features' own too (parley/feedback/handlers.py)."""
    assert socket.grant is not None  # only a joined socket's frames are handled
    return _take(buckets, socket.grant.user_key, limit, detail, extra)


def _take(
    buckets: UserBuckets, key: str, limit: str, detail: str, extra: dict[str, Any]
) -> Limit | None:
    bucket = buckets.get(key, get_config().rate_limits[limit])
    if bucket is None or bucket.take():
        return None
    return Limit(bucket, detail, extra)


def _send_limit(socket: RoomConsumer, frame: protocol.Send) -> Limit | None:
    extra = {"client_id": frame.client_id}
    assert socket.grant is not None  # joined
    if socket.grant.visitor is None:
        return user_limit(socket, user_buckets, "USER", "You are posting messages too fast.", extra)
    # A visitor: its own limit, and one for everyone at its client address.
    return user_limit(
        socket, visitor_buckets, "VISITOR", "You are posting messages too fast.", extra
    ) or _take(
        address_buckets, client_address(socket.scope), "VISITOR_IP",
        "Too many messages come from your network; wait a little.", extra,
    )  # fmt: skip


def _regenerate_limit(socket: RoomConsumer, frame: protocol.Regenerate) -> Limit | None:
    """An answer asked for again counts as a message sent: it costs the model as much."""
    assert socket.grant is not None  # joined
    buckets, limit = (
        (user_buckets, "USER") if socket.grant.visitor is None else (visitor_buckets, "VISITOR")
    )
    return user_limit(
        socket, buckets, limit, "You are asking for answers too fast.", frame.reply_fields()
    )


def _resume_limit(socket: RoomConsumer, frame: protocol.Resume) -> Limit | None:
    # `after` tells the client which resume to send again after retry_after.
    return user_limit(
        socket, resume_buckets, "RESUME", "You are asking for history too fast.",
        {"after": frame.after},
    )  # fmt: skip


@handles(protocol.Send, limit=_send_limit)
async def handle_send(socket: RoomConsumer, frame: protocol.Send) -> None:
    """Store the message, acknowledge it, tell the room; then ask the assistant if asked.
    An edit is stored as a new version of the sender's own message, and asked anew."""
    room, user, grant = socket.room, socket.user, socket.grant
    assert room is not None and grant is not None  # joined
    version_of_id = None
    if frame.edit_of is not None:
        try:
            version_of_id = await database_call(
                services.message_to_edit, room=room, message_id=frame.edit_of, user=user
            )
        except NotEditable as exc:
            socket.reply_error("not_editable", str(exc), client_id=frame.client_id)
            return
    reply = {"client_id": frame.client_id}
    if not await _quotas_take(socket, answer=frame.ask, client_id=frame.client_id, reply=reply):
        return

    def stored(message: Message, created: bool) -> None:
        payload = payloads.message_payload(message)
        socket.reply(
            protocol.ack(client_id=frame.client_id, message=payload, duplicate=not created)
        )
        if created:
            broadcast_now(room, protocol.message(payload))

    try:
        message, created = await post_queue().post(
            room=room, author=user, text=frame.text, client_id=frame.client_id,
            version_of_id=version_of_id, on_stored=stored,
        )  # fmt: skip
    except BaseException:  # not stored: its answer goes back
        if frame.ask:
            await _quota_return(socket)
        raise
    if not frame.ask:
        return
    if not created:  # a resend: its question took its answer the first time
        await _quota_return(socket)
        return
    try:
        await answers.answer_ask(room=room, question=message)
    except QueueFull as exc:
        await _quota_return(socket)
        socket.reply_error("queue_full", str(exc), client_id=frame.client_id)


async def _quotas_take(
    socket: RoomConsumer, *, answer: bool, reply: dict[str, Any], client_id: str = ""
) -> bool:
    """Count a visitor's message (or regeneration) against its ``DAILY_MESSAGES``
    (``client_id``: of a message that may be stored already), and take an ``answer`` from
    the asker's quotas; tell them when one is spent (``reply``: fields the error repeats)
    and return ``False``."""
    room, grant = socket.room, socket.grant
    assert room is not None and grant is not None  # joined
    try:
        if grant.visitor is not None:
            await database_call(visitor_quota_take, visitor=grant.visitor, client_id=client_id)
        if answer and await _quotas_in_force():
            await database_call(quota_take, user=socket.user, visitor_id=room.visitor_id)
    except QuotaExceeded as exc:
        renews_at = exc.renews_at.isoformat()
        socket.reply_error("quota_exceeded", str(exc), renews_at=renews_at, **reply)
        return False
    return True


async def _quotas_in_force() -> bool:
    """Whether any quota exists: a database hop at most every few seconds (no quota, no
    cost to asking)."""
    known = quotas_known()
    return known if known is not None else await database_call(quotas_in_force)


async def _quota_return(socket: RoomConsumer, *, asked_at: datetime | None = None) -> None:
    """Give back the answer :func:`_quotas_take` took (at ``asked_at``, or now) for a
    question that gets none."""
    assert socket.room is not None  # joined
    if not await _quotas_in_force():
        return
    user_id = socket.user.pk if socket.user is not None else None
    visitor_id = socket.room.visitor_id
    await database_call(quota_return, user_id=user_id, visitor_id=visitor_id, now=asked_at)


@handles(protocol.Cancel)
async def handle_cancel(socket: RoomConsumer, frame: protocol.Cancel) -> None:
    """Stop the room's answer (the answers code decides which one, if any)."""
    assert socket.room is not None  # joined
    by = socket.user.get_username() if socket.user is not None else "the visitor"
    try:
        await answers.answer_cancel_for(room=socket.room, message_id=frame.message_id, by=by)
    except NothingToCancel as exc:
        socket.reply_error("nothing_to_cancel", str(exc))
    except LayerUnavailable as exc:
        socket.reply_error("unavailable", str(exc))


@handles(protocol.Regenerate, limit=_regenerate_limit)
async def handle_regenerate(socket: RoomConsumer, frame: protocol.Regenerate) -> None:
    """Answer again the question of a finished answer: its new version streams to the room.
    A visitor's counts against its daily quota, as a message would."""
    room = socket.room
    assert room is not None  # joined
    if not await _quotas_take(socket, answer=True, reply=frame.reply_fields()):
        return
    try:
        by = socket.user.pk if socket.user is not None else None
        await answers.answer_regenerate(room=room, answer_id=frame.message_id, by=by)
    except NothingToRegenerate as exc:
        await _quota_return(socket)
        socket.reply_error("not_regenerable", str(exc), **frame.reply_fields())
    except AssistantBusy as exc:
        await _quota_return(socket)
        socket.reply_error("assistant_busy", str(exc), **frame.reply_fields())


@handles(protocol.Decide)
async def handle_decide(socket: RoomConsumer, frame: protocol.Decide) -> None:
    """Approve or deny a tool call that waits: the answer goes on in this process."""
    assert socket.room is not None  # joined
    decision = Decision(approve=frame.approve, arguments=frame.arguments, always=frame.always)
    try:
        await answers.answer_decide(
            room=socket.room, user=socket.user, run_id=frame.step, decision=decision
        )
    except DecisionRefused as exc:
        socket.reply_error(exc.code, str(exc), **frame.reply_fields())


@handles(protocol.Withdraw)
async def handle_withdraw(socket: RoomConsumer, frame: protocol.Withdraw) -> None:
    """Take the sender's own waiting question out of the queue; tell the room."""
    room = socket.room
    assert room is not None  # joined
    question = await database_call(
        answers.question_withdraw, room=room, message_id=frame.message_id, user=socket.user
    )
    if question is None:
        socket.reply_error(
            "not_waiting", "That question is not waiting, or not yours.", **frame.reply_fields()
        )
        return
    await _quota_return(socket, asked_at=question.created_at)
    await broadcast(room, protocol.message(payloads.message_payload(question)))


@handles(protocol.Resume, limit=_resume_limit)
async def handle_resume(socket: RoomConsumer, frame: protocol.Resume) -> None:
    """Send the messages after ``frame.after``, and the text so far of a streaming answer."""
    room = socket.room
    assert room is not None  # joined
    await answers.answers_interrupt_stale(room=room)
    messages, more = await database_call(selectors.messages_after, room=room, after=frame.after)
    last_seq = messages[-1].seq if messages else frame.after
    listed = [payloads.message_payload(m) for m in messages]
    assert socket.grant is not None  # joined
    await feedback_attach(listed, messages=messages, user=socket.user, visitor=socket.grant.visitor)
    socket.reply(protocol.history(messages=listed, more=more, last_seq=last_seq))
    for message in messages:
        if message.status == Message.Status.STREAMING:
            # If the layer is down, the sync frame sent once it is back brings a new resume.
            with contextlib.suppress(LayerUnavailable):
                await answers.answer_request_snapshot(
                    room=room,
                    message_id=message.pk,
                    reply_to=get_hub().reply_address(socket.token),
                )
