"""The demo's tools (docs/tools.md): what a site exposes of its own data to the assistant,
here the rooms of Parley itself. With PARLEY_BACKEND=openai the assistant may call them."""

from __future__ import annotations

from typing import Annotated, Any

from django.db.models import Count
from pydantic import Field

from parley.exceptions import RateLimited
from parley.models import Membership, Message, Room
from parley.rooms import services
from parley.tools import ToolContext, ToolError, tool


def _member(context: ToolContext) -> Any:
    if not context.user.is_authenticated:
        raise ToolError("Only a signed-in member has rooms; a visitor's conversation is not one.")
    return context.user


@tool(personal=True)
def my_rooms(context: ToolContext) -> list[dict[str, Any]]:
    """List the chat rooms the asker is a member of, newest first: each room's title, kind
    (private or shared), number of members and number of messages."""
    rooms = (
        Room.objects.filter(pk__in=Membership.objects.filter(user=_member(context)).values("room"))
        .annotate(members_count=Count("memberships"))
        .order_by("-created_at")[:50]
    )
    return [
        {
            "title": room.title,
            "kind": room.kind,
            "members": room.members_count,
            "messages": room.last_seq,
        }
        for room in rooms
    ]


@tool(personal=True)
def search_messages(
    context: ToolContext,
    words: Annotated[
        str, Field(min_length=2, max_length=200, description="Words the message contains.")
    ],
    limit: Annotated[int, Field(ge=1, le=20, description="How many messages at most.")] = 10,
) -> list[dict[str, Any]]:
    """Search the messages of the rooms the asker is a member of for some words, newest
    first: each message's room, author, time and text."""
    found = (
        Message.objects.filter(room__memberships__user=_member(context), text__icontains=words)
        .select_related("room", "author")
        .order_by("-created_at", "-pk")[:limit]
    )
    return [
        {
            "room": message.room.title,
            "author": message.author.get_username() if message.author else "assistant",
            "when": message.created_at.isoformat(timespec="minutes"),
            "text": message.text[:300],
        }
        for message in found
    ]


@tool(confirm=True)
def create_room(
    context: ToolContext,
    title: Annotated[str, Field(min_length=1, max_length=200, description="The room's title.")],
    invite: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=150)]],
        Field(max_length=10, description="Usernames to invite to it."),
    ] = [],  # noqa: B006 - pydantic copies defaults
) -> str:
    """Create a shared room owned by the asker, and invite people to it by username. It
    changes the site: every call waits for the asker's approval."""
    room = services.room_create(owner=_member(context), title=title, kind=Room.Kind.SHARED)
    try:
        for username in invite:
            services.invitation_create(room=room, by=context.user, username=username)
    except RateLimited as exc:
        raise ToolError(f"Created the room {room.title!r}, but {exc}") from None
    if not invite:
        return f"Created the shared room {room.title!r}."
    # As the rooms page: whether a name has an account is never said.
    return f"Created the shared room {room.title!r}; invitations went to {', '.join(invite)}."
