"""Operations on rooms and messages, shared by the consumer, the views and the commands.

Synchronous and transactional; async callers run them with :func:`parley.db.database_call`.
Functions are keyword-only and named ``<entity>_<action>``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from .backends.base import AssistantRequest, Passage, Turn
from .conf import get_config
from .exceptions import AssistantBusy, PermissionDenied
from .models import Membership, Message, Room
from .rendering import render_markdown

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset(
    {
        Message.Status.COMPLETE,
        Message.Status.CANCELLED,
        Message.Status.FAILED,
        Message.Status.INTERRUPTED,
    }
)


def _next_seq(room_id: int) -> int:
    """Take the room's next sequence number. Must run inside the transaction that stores the
    message: the UPDATE locks the room row until commit, so concurrent writers queue up and a
    rolled-back message gives its number back (no gaps)."""
    if _update_returning():
        # One statement instead of an UPDATE and a SELECT: every message pays for this.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Room._meta.db_table} SET last_seq = last_seq + 1 WHERE id = %s"
                " RETURNING last_seq",
                [room_id],
            )
            return cursor.fetchone()[0]
    Room.objects.filter(pk=room_id).update(last_seq=F("last_seq") + 1)
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).get()


def _update_returning() -> bool:
    """Whether the database has ``UPDATE … RETURNING`` (PostgreSQL, SQLite 3.35+)."""
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        import sqlite3

        return sqlite3.sqlite_version_info >= (3, 35)
    return False


def user_payload(user: AbstractBaseUser | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.pk, "name": user.get_username()}


def room_payload(room: Room) -> dict[str, Any]:
    return {"id": room.public_id, "title": room.title, "kind": room.kind}


def message_payload(message: Message) -> dict[str, Any]:
    """The wire form of a message. Assistant Markdown comes rendered and sanitised in
    ``html``; user text is sent only as text."""
    payload: dict[str, Any] = {
        "id": message.pk,
        "seq": message.seq,
        "role": message.role,
        "author": user_payload(message.author),
        "text": message.text,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "reply_to": message.reply_to_id,
    }
    if message.role == Message.Role.ASSISTANT and message.status != Message.Status.STREAMING:
        payload["html"] = render_markdown(message.text)
    if message.error:
        payload["error"] = message.error
    if message.client_id:
        payload["client_id"] = message.client_id
    return payload


# Rooms -------------------------------------------------------------------------------------


def room_create(*, owner: AbstractBaseUser, title: str, kind: str = Room.Kind.PRIVATE) -> Room:
    """Create a room with ``owner`` as its first member."""
    with transaction.atomic():
        room = Room.objects.create(owner=owner, title=title.strip() or "Untitled", kind=kind)
        Membership.objects.create(room=room, user=owner)
    return room


def room_invite(*, room: Room, by: AbstractBaseUser, user: AbstractBaseUser) -> Membership:
    """Add ``user`` to a shared room. Only members may invite; private rooms take nobody."""
    if room.kind != Room.Kind.SHARED:
        raise PermissionDenied("Private rooms have one member; create a shared room to invite.")
    if not room_is_member(room=room, user=by):
        raise PermissionDenied("Only members of a room may invite to it.")
    membership, _ = Membership.objects.get_or_create(
        room=room, user=user, defaults={"invited_by": by}
    )
    return membership


def room_is_member(*, room: Room, user: AbstractBaseUser) -> bool:
    return bool(user.is_authenticated) and room.memberships.filter(user=user).exists()


def room_get_for_member(*, public_id: str, user: AbstractBaseUser) -> Room:
    """The room, if ``user`` is a member. Unknown rooms and foreign rooms raise the same
    :class:`PermissionDenied`, so a probe learns nothing about which rooms exist."""
    if not user.is_authenticated:
        raise PermissionDenied("Log in first.")
    room = Room.objects.filter(public_id=public_id, memberships__user=user).first()
    if room is None:
        raise PermissionDenied("No such room, or you are not a member of it.")
    return room


def rooms_for_user(*, user: AbstractBaseUser) -> list[Room]:
    return list(Room.objects.filter(memberships__user=user).select_related("owner"))


# Messages ----------------------------------------------------------------------------------


def message_post(
    *, room: Room, author: AbstractBaseUser, text: str, client_id: str = ""
) -> tuple[Message, bool]:
    """Store a user's message; returns ``(message, created)``.

    A ``client_id`` already used by this author in this room returns the stored message with
    ``created=False``: a resend after a reconnect is not stored twice. The unique constraint
    finds those (resends are rare), so a new message costs no lookup first.
    """
    now = timezone.now()
    message = Message(
        room=room,
        role=Message.Role.USER,
        author=author,
        text=text,
        client_id=client_id,
        status=Message.Status.COMPLETE,
        created_at=now,
        updated_at=now,
    )
    try:
        with transaction.atomic():
            message.seq = _next_seq(room.pk)
            _message_insert(message)
    except IntegrityError:
        existing = _message_by_client_id(room=room, author=author, client_id=client_id)
        if client_id and existing is not None:
            return existing, False
        raise
    return message, True


def _message_insert(message: Message) -> None:
    """Insert a new message as ``message.save(force_insert=True)`` does (the same row, the
    same ``pre_save`` and ``post_save`` signals), with a statement built once per database.

    Every posted message waits for this before its acknowledgement, and on SQLite the ORM's
    work to build and adapt an INSERT takes longer than the write itself (bench/README.md).
    Databases that cannot return the new id from an INSERT get ``save()``.
    """
    if not connection.features.can_return_columns_from_insert:
        message.save(force_insert=True)
        return
    using = connection.alias
    pre_save.send(sender=Message, instance=message, raw=False, using=using, update_fields=None)
    sql, attnames, datetimes = _message_insert_statement(connection.vendor)
    adapt = connection.ops.adapt_datetimefield_value
    params = [getattr(message, name) for name in attnames]
    for index in datetimes:
        params[index] = adapt(params[index])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        message.pk = cursor.fetchone()[0]
    message._state.adding = False
    message._state.db = using
    post_save.send(
        sender=Message, instance=message, created=True, update_fields=None, raw=False, using=using
    )


@functools.cache
def _message_insert_statement(vendor: str) -> tuple[str, list[str], list[int]]:
    """``(INSERT … RETURNING id, the attributes it takes in order, the positions of the
    datetimes among them)`` for the current connection's database (``vendor`` keys the
    cache)."""
    quote = connection.ops.quote_name
    fields = [field for field in Message._meta.concrete_fields if not field.primary_key]
    sql = "INSERT INTO {} ({}) VALUES ({}) RETURNING {}".format(
        quote(Message._meta.db_table),
        ", ".join(quote(field.column) for field in fields),
        ", ".join(["%s"] * len(fields)),
        quote(Message._meta.pk.column),
    )
    datetimes = [i for i, field in enumerate(fields) if isinstance(field, models.DateTimeField)]
    return sql, [field.attname for field in fields], datetimes


def _message_by_client_id(
    *, room: Room, author: AbstractBaseUser, client_id: str
) -> Message | None:
    # The exclude() repeats the condition of the partial unique index, so that SQLite uses it.
    return (
        Message.objects.select_related("author")
        .filter(room=room, author=author, client_id=client_id)
        .exclude(client_id="")
        .first()
    )


def messages_after(
    *, room: Room, after: int, limit: int | None = None, max_bytes: int | None = None
) -> tuple[list[Message], bool]:
    """Messages of ``room`` with ``seq > after``, oldest first, at most ``limit`` of them and
    ``max_bytes`` of them by :func:`message_size` (but always the first); and whether more
    follow.

    Rows are fetched a few at a time and no further than the page: a room of long messages
    costs one page's worth of rows, not ``limit`` of them.
    """
    config = get_config()
    limit = limit or config.history_page_size
    max_bytes = max_bytes or config.history_page_bytes
    rows: list[Message] = []
    size = 0
    query = (
        Message.objects.select_related("author")
        .filter(room=room, seq__gt=after)
        .order_by("seq")[: limit + 1]
    )
    for message in query.iterator(chunk_size=16):
        size += message_size(message)
        if len(rows) == limit or (rows and size > max_bytes):
            return rows, True
        rows.append(message)
    return rows, False


def message_size(message: Message) -> int:
    """About how many bytes ``message`` takes in a frame: its text in UTF-8, twice for a
    finished assistant answer (it carries its rendered ``html`` too), plus its other fields."""
    text = len(message.text.encode("utf-8", "surrogatepass"))
    rendered = message.role == Message.Role.ASSISTANT and message.status != Message.Status.STREAMING
    return 200 + text * (2 if rendered else 1)


def message_get(*, message_id: int) -> Message:
    return Message.objects.select_related("author").get(pk=message_id)


# Answers -----------------------------------------------------------------------------------


def answer_start(*, room: Room, reply_to: Message, worker: str) -> Message:
    """Open the room's assistant answer to ``reply_to`` (status ``streaming``).

    Raises :class:`AssistantBusy` when the room already has an answer streaming, whichever
    process runs it: the database enforces one streaming answer per room.
    """
    if Message.objects.filter(room=room, status=Message.Status.STREAMING).exists():
        raise AssistantBusy("The assistant is already answering in this room.")
    try:
        with transaction.atomic():
            return Message.objects.create(
                room=room,
                seq=_next_seq(room.pk),
                role=Message.Role.ASSISTANT,
                text="",
                status=Message.Status.STREAMING,
                reply_to=reply_to,
                worker=worker,
            )
    except IntegrityError:
        raise AssistantBusy("The assistant is already answering in this room.") from None


def answer_streaming(*, room: Room) -> Message | None:
    """The room's answer now streaming, if any."""
    return Message.objects.filter(room=room, status=Message.Status.STREAMING).first()


def answer_save_progress(*, message_id: int, text: str) -> None:
    """Record the text generated so far (only while the answer is still streaming). The
    ``updated_at`` stamp doubles as the answer's heartbeat."""
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        text=text, updated_at=timezone.now()
    )


def answers_interrupt_stale(*, room: Room | None = None) -> list[Message]:
    """Mark ``interrupted`` the streaming answers (of ``room``, or everywhere) whose process
    has not written a heartbeat for ``ANSWER_STALE_AFTER`` seconds; returns them."""
    cutoff = timezone.now() - timedelta(seconds=get_config().answer_stale_after)
    stale = Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=cutoff)
    if room is not None:
        stale = stale.filter(room=room)
    ids = list(stale.values_list("pk", flat=True))
    if not ids:
        return []
    Message.objects.filter(pk__in=ids, status=Message.Status.STREAMING).update(
        status=Message.Status.INTERRUPTED,
        error="The server generating this answer stopped.",
        updated_at=timezone.now(),
    )
    return list(Message.objects.select_related("author", "room").filter(pk__in=ids))


def answer_finish(*, message_id: int, text: str, status: str, error: str = "") -> Message:
    """Close an answer with its final text and a terminal status."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"{status!r} is not a terminal status")
    Message.objects.filter(pk=message_id).update(
        text=text, status=status, error=error[:500], updated_at=timezone.now()
    )
    return message_get(message_id=message_id)


def answer_request(*, answer: Message) -> AssistantRequest:
    """What the backend is asked for ``answer``: the room's recent finished messages up to
    the question, oldest first."""
    room = answer.room
    limit = get_config().context_messages
    rows = list(
        Message.objects.select_related("author")
        .filter(room=room, seq__lt=answer.seq)
        .exclude(role=Message.Role.ASSISTANT, status=Message.Status.STREAMING)
        .exclude(text="")
        .order_by("-seq")[:limit]
    )
    rows.reverse()
    turns = [
        Turn(
            role="assistant" if m.role == Message.Role.ASSISTANT else "user",
            content=m.text,
            author=m.author.get_username() if m.author else "",
        )
        for m in rows
    ]
    asker = answer.reply_to.author if answer.reply_to and answer.reply_to.author else None
    request = AssistantRequest(
        turns=turns, room=room.title, user=asker.get_username() if asker else ""
    )
    return replace(request, passages=tuple(_passages_for(question=request.question, user=asker)))


def _passages_for(*, question: str, user: AbstractBaseUser | None) -> list[Passage]:
    """The knowledge passages for ``question`` that ``user`` may read. A broken index
    costs the answer its passages, not the answer itself."""
    from .knowledge.index import passages_search

    try:
        return passages_search(query=question, user=user)
    except Exception:
        logger.exception("knowledge search failed; answering without passages")
        return []


# People ------------------------------------------------------------------------------------


def user_get_by_username(*, username: str) -> AbstractBaseUser | None:
    """The active user called ``username`` (exact match on the user model's username field),
    or None."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    return model._default_manager.filter(
        **{model.USERNAME_FIELD: username.strip(), "is_active": True}
    ).first()


def room_members(*, room: Room) -> list[AbstractBaseUser]:
    """The room's members, in the order they joined."""
    return [m.user for m in room.memberships.select_related("user").order_by("joined_at", "pk")]
