"""Feedback as evaluation data: one JSON object a feedback, and the preference pairs of
answers regenerated (``manage.py parley_feedback_export``, docs/operations.md)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from ..models import Feedback


def feedback_record(feedback: Feedback) -> dict[str, Any]:
    """One feedback with what was judged, as the snapshot it keeps has it. Who gave it is
    left out (a user or a visitor, no name): evaluation data need not say who."""
    answer = feedback.answer
    room = answer.room
    return {
        "id": feedback.pk,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "question": feedback.question,
        "answer": feedback.answer_text,
        "answer_status": feedback.answer_status,
        "sources": feedback.sources,
        "tool_steps": feedback.tool_steps,
        "backend": feedback.backend,
        "model": feedback.model,
        "room_kind": room.kind,
        "widget": room.widget,
        "rater": "visitor" if feedback.visitor_id is not None else "user",
        "answer_id": answer.pk,
        "question_id": answer.reply_to_id,
        "regenerated": answer.version_of_id is not None,
        "answered_at": answer.created_at.isoformat(),
        "created_at": feedback.created_at.isoformat(),
        "updated_at": feedback.updated_at.isoformat(),
    }


def feedback_pairs(rows: Iterable[Feedback]) -> Iterator[dict[str, Any]]:
    """Preference pairs (``prompt``, ``chosen``, ``rejected``, as DPO trainers read them)
    from ``rows`` ordered by exchange (:func:`~parley.feedback.selectors.feedback_by_exchange`):
    where versions of one answer (regenerated: the same question) were judged, every version
    rated up against every version rated down.

    A version's verdict is everyone's: thumbs up from someone and down from no one makes it
    chosen, and the reverse rejected; one rated both ways (by different members of a shared
    room) is left out, as no verdict. Only one group of rows is held at a time."""
    for _, group in itertools.groupby(rows, key=lambda row: row.exchange):
        verdicts: dict[int, set[str]] = {}
        rated: dict[int, Feedback] = {}
        for row in group:
            verdicts.setdefault(row.answer_id, set()).add(row.rating)
            rated.setdefault(row.answer_id, row)
        chosen = [rated[a] for a, v in verdicts.items() if v == {Feedback.Rating.UP}]
        rejected = [rated[a] for a, v in verdicts.items() if v == {Feedback.Rating.DOWN}]
        for good, bad in itertools.product(chosen, rejected):
            yield _pair(good, bad)


def _pair(good: Feedback, bad: Feedback) -> dict[str, Any]:
    return {
        "prompt": good.question,
        "chosen": good.answer_text,
        "rejected": bad.answer_text,
        "question_id": good.answer.reply_to_id,
        "chosen_id": good.answer_id,
        "rejected_id": bad.answer_id,
        "chosen_model": good.model,
        "rejected_model": bad.model,
        "backend": good.backend,
        "room_kind": good.answer.room.kind,
    }
