"""Wire payloads: how a user, a room and a message look inside a frame (docs/protocol.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from ..models import Message, Room
from ..rendering import render_markdown
from ..tools.payloads import tool_run_payload

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User


@overload
def user_payload(user: None) -> None: ...
@overload
def user_payload(user: _User) -> dict[str, Any]: ...
def user_payload(user: _User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.pk, "name": user.get_username()}


def visitor_payload() -> dict[str, Any]:
    """Who a visitor who is not logged in is, in its ``hello``: its messages have no author
    (docs/protocol.md)."""
    return {"id": None, "name": "You", "visitor": True}


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
    if message.version_of_id is not None:
        payload["version_of"] = message.version_of_id
    if message.role == Message.Role.ASSISTANT:
        if message.model:
            payload["model"] = message.model
        if message.status != Message.Status.STREAMING:
            payload["html"] = render_markdown(message.text)
    if message.error:
        payload["error"] = message.error
    if message.client_id:
        payload["client_id"] = message.client_id
    if message.waiting:
        payload["waiting"] = True
    # Its tool calls, where they were read with it (see messages_after, answer_finish).
    steps = getattr(message, "tool_steps", None)
    if steps:
        payload["tools"] = [tool_run_payload(run) for run in steps]
    return payload
