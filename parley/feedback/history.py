"""One's own feedback, put back on the answers of a history page (``resume`` replies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..models import Message
from ..realtime.db import database_call
from .selectors import feedback_mine

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User


async def feedback_attach(
    listed: Sequence[dict[str, Any]],
    *,
    messages: Sequence[Message],
    user: _User | None,
    visitor: str | None,
) -> None:
    """Put the reader's own feedback on the payloads ``listed`` of ``messages`` (a history
    page, for one socket): ``"feedback": {rating, comment}`` on the answers they rated. A
    page without a finished answer costs no trip to the database."""
    answers = [
        m.pk for m in messages
        if m.role == Message.Role.ASSISTANT and m.status != Message.Status.STREAMING
    ]  # fmt: skip
    if not answers:
        return
    mine = await database_call(feedback_mine, answer_ids=answers, user=user, visitor=visitor)
    for payload in listed:
        if payload["id"] in mine:
            payload["feedback"] = mine[payload["id"]]
