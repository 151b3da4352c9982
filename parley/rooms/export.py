"""A room's history written out for a member to keep: Markdown to read, JSON to process
(docs/operations.md). Generated a page of rows at a time, so that a room of any size costs
one page of memory, and streamed as it is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.utils import timezone

from ..models import Message, Room
from .payloads import message_payload, room_payload
from .selectors import messages_after

# Messages read per query while exporting.
EXPORT_PAGE = 500


def room_messages(room: Room) -> Iterator[Message]:
    """Every message of ``room``, in ``seq`` order, with its tool steps."""
    after = 0
    while True:
        page, more = messages_after(room=room, after=after, limit=EXPORT_PAGE, max_bytes=2**62)
        yield from page
        if not more or not page:
            return
        after = page[-1].seq


def export_json(room: Room) -> Iterator[str]:
    """The room and its messages as one JSON document: ``{"room": …, "exported_at": …,
    "messages": [...]}``, each message as the protocol gives it (docs/protocol.md)."""
    head = {"room": room_payload(room), "exported_at": timezone.now().isoformat()}
    yield json.dumps(head, ensure_ascii=False)[:-1] + ', "messages": ['
    for index, message in enumerate(room_messages(room)):
        payload: dict[str, Any] = message_payload(message)
        payload.pop("html", None)  # the text is the record; HTML is how a page shows it
        yield ("," if index else "") + json.dumps(payload, ensure_ascii=False)
    yield "]}\n"


def export_markdown(room: Room) -> Iterator[str]:
    """The room as a Markdown transcript: who wrote each message, when, and what."""
    yield f"# {_line(room.title)}\n\nExported {timezone.now():%Y-%m-%d %H:%M} UTC.\n"
    for message in room_messages(room):
        if message.role == Message.Role.ASSISTANT:
            who = f"Assistant ({message.model})" if message.model else "Assistant"
        else:
            who = message.author.get_username() if message.author else _nobody(room)
        status = "" if message.status == Message.Status.COMPLETE else f" · {message.status}"
        yield f"\n## {_line(who)} · {message.created_at:%Y-%m-%d %H:%M}{status}\n\n"
        for run in getattr(message, "tool_steps", ()):
            yield f"> Tool `{run.tool}` ({run.status}): `{_line(run.arguments)}`\n\n"
        yield f"{message.text}\n"


def _nobody(room: Room) -> str:
    """Who wrote a user message without an author: the visitor whose conversation it is,
    or, in a member's room, a user deleted since (parley/retention/deletion.py)."""
    return "Visitor" if room.visitor_id is not None else "Deleted user"


def _line(text: str) -> str:
    """``text`` on one line: a title or a name cannot start a heading of its own."""
    return " ".join(text.split())
