from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from parley.models import Message, Room


def exchanges(
    room: Room, count: int, *, author, days: float = 0, now: datetime | None = None
) -> list[tuple[Message, Message]]:
    """``count`` questions of ``author``'s, each answered, written ``days`` ago, numbered on
    from the room's last message."""
    when = (now or timezone.now()) - timedelta(days=days)
    first = room.last_seq + 1
    questions = Message.objects.bulk_create(
        Message(room=room, seq=first + 2 * i, role="user", author=author, text=f"q{i}",
                client_id=f"c-{first + 2 * i}" if author else "")
        for i in range(count)
    )  # fmt: skip
    answers = Message.objects.bulk_create(
        Message(room=room, seq=q.seq + 1, role="assistant", reply_to=q, text=f"a{q.seq}")
        for q in questions
    )
    Message.objects.filter(pk__in=[m.pk for m in questions + answers]).update(created_at=when)
    room.last_seq = first + 2 * count - 1
    room.save(update_fields=["last_seq"])
    # A room is older than its messages.
    Room.objects.filter(pk=room.pk, created_at__gt=when).update(created_at=when)
    return list(zip(questions, answers, strict=True))


def later_version(room: Room, of: Message, *, days: float = 0, **fields) -> Message:
    """A later version of ``of`` (an edit of a question, a regenerated answer), ``days`` old."""
    room.last_seq += 1
    room.save(update_fields=["last_seq"])
    fields = {"role": of.role, "author": of.author, "reply_to": of.reply_to, **fields}
    message = Message.objects.create(
        room=room, seq=room.last_seq, version_of=of.version_of or of, text="v", **fields
    )
    aged(message, days=days)
    return message


def aged(obj, *, days: float) -> None:
    """Make a message or a room ``days`` old."""
    type(obj).objects.filter(pk=obj.pk).update(created_at=timezone.now() - timedelta(days=days))


def seqs(room: Room) -> list[int]:
    return list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))


@pytest.fixture
def retention(settings):
    """Set ``PARLEY["RETENTION"]``: ``retention(PRIVATE=30, ...)``."""

    def configure(**days):
        settings.PARLEY = {**getattr(settings, "PARLEY", {}), "RETENTION": days}

    return configure
