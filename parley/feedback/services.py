"""Writes of feedback: given, changed, taken back (``rate`` frames, docs/protocol.md).

Synchronous; the socket's handler calls them through :func:`parley.realtime.db.database_call`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..models import Feedback, Message, Room, ToolRun, Visitor

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User


class FeedbackRefused(Exception):
    """Feedback that cannot be given: ``code`` (an error frame's) and the sentence for the
    person."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def feedback_give(
    *,
    room: Room,
    answer_id: int,
    user: _User | None,
    visitor: str | None,
    rating: str | None,
    comment: str = "",
) -> Feedback | None:
    """Store the feedback of ``user`` (or of the visitor with public id ``visitor``, whose
    conversation ``room`` is) on the room's finished answer ``answer_id``: a new row, or
    theirs changed; ``rating`` None deletes theirs. Returns the row, or None once deleted.

    The caller has checked that they may read the room (its socket was admitted to it);
    this checks that the answer is one of the room's and finished (any terminal status:
    a stopped or failed answer can be judged too), else raises :class:`FeedbackRefused`
    (``not_rateable``). The snapshot of the answer (see :class:`Feedback`) is taken anew
    each time: it is what the rating was last given on."""
    answer = (
        Message.objects.select_related("reply_to")
        .filter(pk=answer_id, room=room, role=Message.Role.ASSISTANT)
        .exclude(status=Message.Status.STREAMING)
        .first()
    )
    if answer is None:
        raise FeedbackRefused("not_rateable", "That is not a finished answer of this room.")
    who = _rater(user=user, visitor=visitor)
    if rating is None:
        Feedback.objects.filter(answer=answer, **who).delete()
        return None
    fields = {"rating": rating, "comment": comment, **_snapshot(answer, room)}
    # Two sockets of one person at the same moment: get_or_create under it reads the row
    # the other made when its insert meets the unique constraint.
    feedback, _ = Feedback.objects.update_or_create(answer=answer, **who, defaults=fields)
    return feedback


def _rater(*, user: _User | None, visitor: str | None) -> dict[str, Any]:
    if visitor is not None:
        found = Visitor.objects.filter(public_id=visitor).values_list("pk", flat=True).first()
        if found is None:  # gone since its socket opened (expired, carried over)
            raise FeedbackRefused("not_rateable", "This conversation has ended.")
        return {"visitor_id": found}
    assert user is not None  # a socket is a user's or a visitor's
    return {"user": user}


def _snapshot(answer: Message, room: Room) -> dict[str, object]:
    """What an evaluation reads of ``answer``, copied onto its feedback."""
    question = answer.reply_to
    steps = ToolRun.objects.filter(answer=answer).order_by("id")
    return {
        "question": question.text if question is not None else "",
        "answer_text": answer.text,
        "answer_status": answer.status,
        "sources": answer.sources or [],
        "tool_steps": [
            {
                "tool": run.tool,
                "arguments": run.arguments,
                "result": run.result,
                "status": run.status,
            }
            for run in steps
        ],  # fmt: skip
        "backend": room.backend,
        "model": answer.model,
    }


def feedback_carry_over(*, visitor: Visitor, user: _User) -> int:
    """Make the feedback of ``visitor``, who has just logged in as ``user``, theirs (as its
    conversation becomes theirs); returns how many. ``user`` was no member of the visitor's
    conversation before, so no answer has a feedback of both."""
    return Feedback.objects.filter(visitor=visitor).update(user=user, visitor=None)
