"""Reads of rooms, members, invitations and messages: no writes, no side effects.

Synchronous; async callers run them with :func:`parley.realtime.db.database_call`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db import models
from django.db.models import Prefetch

from ..conf import get_config
from ..contrib.orm import room_get_joined, room_member_users
from ..exceptions import RoomPermissionDenied
from ..models import Invitation, Membership, Message, Room, ToolRun
from ..tools.payloads import tool_run_payload

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User


def room_is_member(*, room: Room, user: _User) -> bool:
    return bool(user.is_authenticated) and room.memberships.filter(user=user).exists()


def room_get_for_member(*, public_id: str, user: _User) -> Room:
    """The room, if ``user`` is a member. Unknown rooms and foreign rooms raise the same
    :class:`RoomPermissionDenied`, so a probe learns nothing about which rooms exist."""
    if not user.is_authenticated:
        raise RoomPermissionDenied("Log in first.")
    room = room_get_joined(public_id=public_id, user_pk=user.pk)
    if room is None:
        raise RoomPermissionDenied("No such room, or you are not a member of it.")
    return room


def room_get_for_visitor(*, public_id: str, visitor_id: int) -> Room:
    """The room, if it is the conversation of the visitor with pk ``visitor_id``; any other
    raises the same :class:`RoomPermissionDenied` as an unknown one."""
    room = Room.objects.filter(public_id=public_id, visitor_id=visitor_id).first()
    if room is None:
        raise RoomPermissionDenied("No such room, or it is not your conversation.")
    return room


def memberships_find(*, user_ids: set[Any], room_ids: set[int]) -> set[tuple[Any, int]]:
    """The ``(user id, room id)`` pairs among these users and rooms that are memberships,
    by the same rule as :func:`room_get_for_member` (the re-check of open sockets uses it:
    parley/realtime/access.py)."""
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


def room_members(*, room: Room) -> list[_User]:
    """The room's members, in the order they joined."""
    return room_member_users(room_id=room.pk)


def room_message_count(*, room: Room) -> int:
    return Message.objects.filter(room=room).count()


def user_get_by_username(*, username: str) -> _User | None:
    """The active user called ``username`` (exact match on the user model's username field),
    or None."""
    model = get_user_model()
    return model._default_manager.filter(
        **{model.USERNAME_FIELD: username.strip(), "is_active": True}
    ).first()


def invitations_pending(*, user: _User) -> list[Invitation]:
    """The invitations waiting for ``user``'s answer, newest first."""
    return list(
        Invitation.objects.filter(invitee=user, status=Invitation.Status.PENDING).select_related(
            "room", "invited_by"
        )
    )


def user_messages(*, room: Room, user: _User | None) -> models.QuerySet[Message]:
    """The messages ``user`` posted in the room (``user`` ``None``: the visitor whose
    conversation it is, whose messages have no author)."""
    mine = Message.objects.filter(room=room, role=Message.Role.USER)
    return mine.filter(author=user) if user is not None else mine.filter(author__isnull=True)


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
    steps = Prefetch(
        "tool_runs", queryset=ToolRun.objects.select_related("decided_by"), to_attr="tool_steps"
    )
    query = (
        Message.objects.select_related("author")
        # django-stubs takes to_attr for a new attribute; Message declares it, for payloads.
        .prefetch_related(steps)  # type: ignore[no-redef]
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
    finished assistant answer (it carries its rendered ``html`` too), plus its tool steps, if
    read with it, and its other fields."""
    text = len(message.text.encode("utf-8", "surrogatepass"))
    rendered = message.role == Message.Role.ASSISTANT and message.status != Message.Status.STREAMING
    steps = sum(
        len(json.dumps(tool_run_payload(run), ensure_ascii=False).encode("utf-8", "surrogatepass"))
        for run in getattr(message, "tool_steps", ())
    )
    return 200 + text * (2 if rendered else 1) + steps
