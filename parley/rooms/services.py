"""Operations on rooms and messages, shared by the consumer, the views and the commands.

Synchronous and transactional; async callers run them with :func:`parley.db.database_call`.
Functions are keyword-only and named ``<entity>_<action>``.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast, overload

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, F, Q
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from .backends.base import AssistantRequest, Turn
from .conf import get_config
from .exceptions import AssistantBusy, RateLimited, RoomPermissionDenied
from .knowledge.index import Retrieval, knowledge_search
from .models import Invitation, Membership, Message, Room
from .rendering import render_markdown
from .throttling import page_buckets

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User

    from .knowledge.index import Retrieval

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
            seq: int = cursor.fetchone()[0]
            return seq
    Room.objects.filter(pk=room_id).update(last_seq=F("last_seq") + 1)
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).get()


def _update_returning() -> bool:
    """Whether the database has ``UPDATE … RETURNING`` (PostgreSQL, SQLite 3.35+)."""
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        return sqlite3.sqlite_version_info >= (3, 35)
    return False


@overload
def user_payload(user: None) -> None: ...
@overload
def user_payload(user: _User) -> dict[str, Any]: ...
def user_payload(user: _User | None) -> dict[str, Any] | None:
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


def room_create(*, owner: _User, title: str, kind: str = Room.Kind.PRIVATE) -> Room:
    """Create a room with ``owner`` as its first member."""
    with transaction.atomic():
        room = Room.objects.create(owner=owner, title=title.strip() or "Untitled", kind=kind)
        Membership.objects.create(room=room, user=owner)
    return room


def room_member_add(*, room: Room, user: _User, by: _User | None = None) -> Membership:
    """Make ``user`` a member of a shared room at once, without asking them: for the admin,
    commands and tests. People invite through :func:`invitation_create`, which waits for the
    invitee's consent. Adding the same member twice is harmless."""
    if room.kind != Room.Kind.SHARED:
        raise RoomPermissionDenied("Private rooms have one member; create a shared room to invite.")
    membership, _ = Membership.objects.get_or_create(
        room=room, user=user, defaults={"invited_by": by}
    )
    return membership


def room_member_remove(*, room: Room, user: _User, by: _User) -> bool:
    """Take ``user`` out of ``room``: a member leaving (``by`` is ``user``), or the owner
    removing them. The owner cannot leave their own room. ``False`` if ``user`` was not a
    member. Their open sockets in the room are closed (4403) in every server process by
    the deletion's signal (parley/access.py)."""
    if user.pk == room.owner_id:
        raise RoomPermissionDenied("The owner of a room cannot leave it.")
    if by.pk not in (user.pk, room.owner_id):
        raise RoomPermissionDenied("Only the room's owner may remove its members.")
    deleted, _ = Membership.objects.filter(room=room, user=user).delete()
    return bool(deleted)


def room_is_member(*, room: Room, user: _User) -> bool:
    return bool(user.is_authenticated) and room.memberships.filter(user=user).exists()


def room_get_for_member(*, public_id: str, user: _User) -> Room:
    """The room, if ``user`` is a member. Unknown rooms and foreign rooms raise the same
    :class:`RoomPermissionDenied`, so a probe learns nothing about which rooms exist."""
    if not user.is_authenticated:
        raise RoomPermissionDenied("Log in first.")
    room = Room.objects.filter(public_id=public_id, memberships__user=user).first()
    if room is None:
        raise RoomPermissionDenied("No such room, or you are not a member of it.")
    return room


def memberships_find(*, user_ids: set[Any], room_ids: set[int]) -> set[tuple[Any, int]]:
    """The ``(user id, room id)`` pairs among these users and rooms that are memberships,
    by the same rule as :func:`room_get_for_member` (the re-check of open sockets uses it:
    parley/access.py)."""
    rows = Membership.objects.filter(user_id__in=user_ids, room_id__in=room_ids)
    return set(rows.values_list("user_id", "room_id"))


def rooms_for_user(*, user: _User) -> list[Room]:
    return list(_rooms_of(user))


def rooms_page(*, user: _User, number: Any, per_page: int = 50) -> Page[Room]:
    """One page of ``user``'s rooms, newest first; an out-of-range or malformed ``number``
    gives the nearest page, as ``Paginator.get_page`` does."""
    return Paginator(_rooms_of(user), per_page).get_page(number)


def _rooms_of(user: _User) -> models.QuerySet[Room]:
    return (
        Room.objects.filter(memberships__user=user)
        .select_related("owner")
        .order_by("-created_at", "-pk")
    )


# Invitations and page limits ---------------------------------------------------------------


def user_rate_limit(*, user: _User, action: str) -> None:
    """Take one of ``user``'s tokens for ``RATE_LIMITS[action]`` (``"ROOMS"``,
    ``"INVITES"``); raise :class:`RateLimited` with the wait when none is left. Counted per
    server process, like the socket limits."""
    bucket = page_buckets[action].get(user.pk, get_config().rate_limits[action])
    if bucket is not None and not bucket.take():
        raise RateLimited(f"Too many at once: {action.lower()}", retry_after=bucket.retry_after())


def invitation_create(*, room: Room, by: _User, username: str) -> Invitation | None:
    """Invite the user called ``username`` to a shared room, if there is one to invite.

    Only members invite; private rooms take nobody (:class:`RoomPermissionDenied`). Every call
    counts against the inviter's ``RATE_LIMITS["INVITES"]`` (:class:`RateLimited`), whether
    the name exists or not. A missing or inactive name, a member, the inviter, or an
    invitee :func:`_invitation_refused` turns away gets nothing, and the caller cannot tell
    which (``None``): the answer never says who has an account, nor who declined.
    """
    if room.kind != Room.Kind.SHARED:
        raise RoomPermissionDenied("Private rooms have one member; create a shared room to invite.")
    if not room_is_member(room=room, user=by):
        raise RoomPermissionDenied("Only members of a room may invite to it.")
    user_rate_limit(user=by, action="INVITES")
    invitee = user_get_by_username(username=username)
    if invitee is None or invitee.pk == by.pk or room_is_member(room=room, user=invitee):
        return None
    if _invitation_refused(room=room, invitee=invitee, by=by):
        return None
    try:
        with transaction.atomic():
            return Invitation.objects.create(room=room, invitee=invitee, invited_by=by)
    except IntegrityError:  # invited here already, and not answered yet
        return None


def _invitation_refused(*, room: Room, invitee: _User, by: _User) -> bool:
    """Whether ``invitee`` takes no new invitation to ``room`` from ``by``: they declined
    one to this room before (a "no" stands: the room cannot ask again), or
    ``MAX_PENDING_INVITATIONS`` wait for them from everyone, or
    ``MAX_PENDING_INVITATIONS_PER_INVITER`` from ``by`` (so one account cannot fill the
    whole cap and keep colleagues' invitations out). One query, on the invitee's rows.
    """
    pending = Q(status=Invitation.Status.PENDING)
    counts = Invitation.objects.filter(invitee=invitee).aggregate(
        declined=Count("pk", filter=Q(room=room, status=Invitation.Status.DECLINED)),
        pending=Count("pk", filter=pending),
        from_inviter=Count("pk", filter=pending & Q(invited_by=by)),
    )
    config = get_config()
    return bool(
        counts["declined"] > 0
        or counts["pending"] >= config.max_pending_invitations
        or counts["from_inviter"] >= config.max_pending_invitations_per_inviter
    )


def invitations_pending(*, user: _User) -> list[Invitation]:
    """The invitations waiting for ``user``'s answer, newest first."""
    return list(
        Invitation.objects.filter(invitee=user, status=Invitation.Status.PENDING).select_related(
            "room", "invited_by"
        )
    )


def invitation_answer(*, invitation_id: int, user: _User, accept: bool) -> Invitation:
    """Accept (``user`` becomes a member, through the ORM: ``Membership`` signals fire) or
    decline an invitation waiting for ``user``; any other id raises
    :class:`RoomPermissionDenied`."""
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("room")
            .filter(pk=invitation_id, invitee=user, status=Invitation.Status.PENDING)
            .first()
        )
        if invitation is None:
            raise RoomPermissionDenied("No such invitation.")
        if accept:
            Membership.objects.get_or_create(
                room=invitation.room, user=user, defaults={"invited_by": invitation.invited_by}
            )
        invitation.status = Invitation.Status.ACCEPTED if accept else Invitation.Status.DECLINED
        invitation.answered_at = timezone.now()
        invitation.save(update_fields=["status", "answered_at"])
    return invitation


# Messages ----------------------------------------------------------------------------------


def message_post(
    *, room: Room, author: _User, text: str, client_id: str = ""
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
    # A concrete field has a column (only the others have None).
    sql = "INSERT INTO {} ({}) VALUES ({}) RETURNING {}".format(
        quote(Message._meta.db_table),
        ", ".join(quote(cast(str, field.column)) for field in fields),
        ", ".join(["%s"] * len(fields)),
        quote(cast(str, Message._meta.pk.column)),
    )
    datetimes = [i for i, field in enumerate(fields) if isinstance(field, models.DateTimeField)]
    return sql, [field.attname for field in fields], datetimes


def _message_by_client_id(*, room: Room, author: _User, client_id: str) -> Message | None:
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


def answer_open(*, room: Room, reply_to: Message, worker: str) -> Message:
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


def answers_mark_stale(*, room: Room | None = None) -> list[Message]:
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
    and including the question it answers (``answer.reply_to``), oldest first, and the
    knowledge passages for that question's text.

    Messages posted after the question are left out, even those stored before the answer
    took its number: they are not what was asked (another member's message must never be
    searched with the asker's rights). In a shared room the passages are those every member
    may read (:func:`_passages_for`); ``withheld`` says when some were left out for that.
    """
    room = answer.room
    question = answer.reply_to
    limit = get_config().context_messages
    rows = list(
        Message.objects.select_related("author")
        .filter(room=room, seq__lte=question.seq if question is not None else answer.seq - 1)
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
    asker = question.author if question is not None else None
    request = AssistantRequest(
        turns=turns, room=room.title, user=asker.get_username() if asker else ""
    )
    if question is None:  # deleted since: nothing to search for
        return request
    retrieval = _passages_for(room=room, question=question.text, user=asker)
    return replace(request, passages=tuple(retrieval.passages), withheld=retrieval.withheld)


def _passages_for(*, room: Room, question: str, user: _User | None) -> Retrieval:
    """The knowledge passages for ``question`` that ``user`` may read and, in a shared
    room, every current member too: whatever is posted in a room is disclosed to all its
    members (and to those invited later, who read its history). A broken index costs the
    answer its passages, not the answer itself."""
    audience = room_members(room=room) if room.kind == Room.Kind.SHARED else []
    try:
        return knowledge_search(query=question, user=user, audience=audience)
    except Exception:
        logger.exception("knowledge search failed; answering without passages")
        return Retrieval(passages=[])


# People ------------------------------------------------------------------------------------


def user_get_by_username(*, username: str) -> _User | None:
    """The active user called ``username`` (exact match on the user model's username field),
    or None."""
    model = get_user_model()
    return model._default_manager.filter(
        **{model.USERNAME_FIELD: username.strip(), "is_active": True}
    ).first()


def room_members(*, room: Room) -> list[_User]:
    """The room's members, in the order they joined."""
    return [m.user for m in room.memberships.select_related("user").order_by("joined_at", "pk")]
