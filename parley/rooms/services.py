"""Writes to rooms, members, invitations and messages, shared by the consumer, the views and
the commands (reads are in :mod:`.selectors`, wire forms in :mod:`.payloads`).

Synchronous and transactional; async callers run them with
:func:`parley.realtime.db.database_call`. Functions are keyword-only and named
``<entity>_<action>``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from ..conf import get_config
from ..contrib.orm import MessageConflict, message_insert, messages_insert_many
from ..exceptions import NotEditable, RoomPermissionDenied
from ..models import Invitation, Membership, Message, Room
from ..throttling import page_limit_take
from .selectors import room_is_member, user_get_by_username, user_messages

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User


def room_create(*, owner: _User, title: str, kind: str = Room.Kind.PRIVATE) -> Room:
    """Create a room with ``owner`` as its first member."""
    with transaction.atomic():
        room = Room.objects.create(owner=owner, title=title.strip() or "Untitled", kind=kind)
        Membership.objects.create(room=room, user=owner)
    return room


def room_rename(*, room: Room, by: _User, title: str) -> Room:
    """Give ``room`` a new title (its owner only: :class:`RoomPermissionDenied`). Its
    members' pages show it at once: the room's sockets get a ``room`` frame, their room
    lists a nudge (parley/realtime/inbox.py)."""
    if by.pk != room.owner_id:
        raise RoomPermissionDenied("Only the room's owner may rename it.")
    room.title = title.strip() or room.title
    room.save(update_fields=["title"])
    return room


def room_delete(*, room: Room, by: _User) -> int:
    """Delete ``room`` with its messages, memberships and invitations (its owner only:
    :class:`RoomPermissionDenied`); returns how many messages went. Its open sockets, on
    every server process, are told ``room_deleted`` and closed (4404), and its answer is
    stopped (parley/realtime/access.py)."""
    if by.pk != room.owner_id:
        raise RoomPermissionDenied("Only the room's owner may delete it.")
    with transaction.atomic():
        messages = Message.objects.filter(room=room).count()
        room.delete()
    return messages


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
    the deletion's signal (parley/realtime/access.py)."""
    if user.pk == room.owner_id:
        raise RoomPermissionDenied("The owner of a room cannot leave it.")
    if by.pk not in (user.pk, room.owner_id):
        raise RoomPermissionDenied("Only the room's owner may remove its members.")
    deleted, _ = Membership.objects.filter(room=room, user=user).delete()
    return bool(deleted)


def user_rate_limit(*, user: _User, action: str) -> None:
    """Take one of ``user``'s tokens for ``RATE_LIMITS[action]`` (``"ROOMS"``,
    ``"INVITES"``); raise :class:`RateLimited` with the wait when none is left. Counted per
    server process, like the socket limits."""
    page_limit_take(action=action, key=user.pk)


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


@dataclass(frozen=True, slots=True)
class Post:
    """A user's message to store (:func:`messages_post`); a visitor's has no ``author``.
    ``version_of_id``: the first version of the message it edits (:func:`message_to_edit`)."""

    room: Room
    author: _User | None
    text: str
    client_id: str = ""
    version_of_id: int | None = None


def message_post(
    *, room: Room, author: _User | None, text: str, client_id: str = ""
) -> tuple[Message, bool]:
    """Store a user's message; returns ``(message, created)`` (see :func:`messages_post`)."""
    (result,) = messages_post(posts=[Post(room, author, text, client_id)])
    if isinstance(result, Exception):
        raise result
    return result


def message_to_edit(*, room: Room, message_id: int, user: _User | None) -> int:
    """The id of the first version of ``user``'s message ``message_id`` of the room
    (``user`` ``None``: the visitor whose conversation it is), which an edit of it is a new
    version of: the message itself, or the one it is a version of. Raises
    :class:`NotEditable` for anyone else's, for a question still waiting its turn (withdraw
    it, then ask again), and for one being answered (the edit would hide that answer)."""
    mine = user_messages(room=room, user=user).filter(pk=message_id)
    message = mine.only("pk", "version_of_id").first()
    if message is None:
        raise NotEditable("Only your own messages of this room can be edited.")
    first = message.version_of_id or message.pk
    # Any version, not only the one named: an edit of an older version would be a second
    # question of the same exchange in the queue.
    versions = Message.objects.filter(Q(pk=first) | Q(version_of_id=first))
    if versions.filter(waiting=True).exists():
        raise NotEditable("That question is waiting for its answer: withdraw it to change it.")
    answering = Message.objects.filter(reply_to__in=versions, status=Message.Status.STREAMING)
    if answering.exists():
        raise NotEditable("That question is being answered: stop the answer to change it.")
    return first


def messages_post(*, posts: Sequence[Post]) -> list[tuple[Message, bool] | Exception]:
    """Store users' messages in one transaction (group commit: parley/realtime/posting.py);
    for each post in order, ``(message, created)``, or the exception that refused it alone.

    A ``client_id`` already used by its author in its room gives the stored message with
    ``created=False``: a resend after a reconnect is not stored twice. The insert itself
    finds those (``ON CONFLICT DO NOTHING``: resends are rare), so a new message costs no
    lookup first, and a resend does not cost the others in the transaction their rows.
    A post that fails the transaction otherwise (its room was deleted) fails alone: the
    others are then stored one transaction each.
    """
    try:
        return _messages_insert(posts)
    except Exception:
        if len(posts) == 1:
            raise
    results: list[tuple[Message, bool] | Exception] = []
    for post in posts:
        try:
            results.extend(_messages_insert([post]))
        except Exception as exc:  # noqa: BLE001 - handed to its poster
            results.append(exc)
    return results


def _messages_insert(posts: Sequence[Post]) -> list[tuple[Message, bool] | Exception]:
    now = timezone.now()
    if len(posts) > 1:
        messages = [_user_message(post, now) for post in posts]
        try:
            with transaction.atomic():
                if messages_insert_many(messages):  # PostgreSQL: one round trip for all
                    return [(message, True) for message in messages]
        except MessageConflict:  # a resend among them: rolled back, and stored row by row
            pass
    results: list[tuple[Message, bool] | Exception] = []
    with transaction.atomic():
        for post in posts:
            message = _user_message(post, now)
            if message_store(message):
                results.append((message, True))
                continue
            existing = None
            if post.client_id:
                existing = _message_by_client_id(
                    room=post.room, author=post.author, client_id=post.client_id
                )
            results.append(
                (existing, False)
                if existing is not None
                else IntegrityError(f"message {message.seq} of room {post.room.pk} conflicts")
            )
    return results


def _user_message(post: Post, now: datetime) -> Message:
    return Message(
        room=post.room,
        role=Message.Role.USER,
        author=post.author,
        text=post.text,
        client_id=post.client_id,
        version_of_id=post.version_of_id,
        status=Message.Status.COMPLETE,
        created_at=now,
        updated_at=now,
    )


def _message_by_client_id(*, room: Room, author: _User | None, client_id: str) -> Message | None:
    # The exclude() repeats the condition of the partial unique index, so that SQLite uses it.
    return (
        Message.objects.select_related("author")
        .filter(room=room, author=author, client_id=client_id)
        .exclude(client_id="")
        .first()
    )


def room_seq_take(*, room_id: int) -> int:
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
            row = cursor.fetchone()
        if row is None:
            raise Room.DoesNotExist(f"room {room_id} does not exist")
        seq: int = row[0]
        return seq
    Room.objects.filter(pk=room_id).update(last_seq=F("last_seq") + 1)
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).get()


def message_store(message: Message) -> bool:
    """Give the new ``message`` its room's next number and insert it, in one transaction (the
    caller's, if it has one: no savepoint per row); ``False``, and no row, where a unique
    constraint already holds its like (a client id used before, a second streaming answer):
    then the number is given back, and the room's numbers keep no gap."""
    with transaction.atomic(savepoint=False):
        message.seq = room_seq_take(room_id=message.room_id)
        if message_insert(message):
            return True
        Room.objects.filter(pk=message.room_id).update(last_seq=F("last_seq") - 1)
    return False


def _update_returning() -> bool:
    """Whether the database has ``UPDATE … RETURNING`` (PostgreSQL, SQLite 3.35+)."""
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        return sqlite3.sqlite_version_info >= (3, 35)
    return False
