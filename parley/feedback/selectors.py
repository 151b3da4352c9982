"""Reads of feedback: one person's on a page of answers; every one, for the export.

Synchronous; async callers run them with :func:`parley.realtime.db.database_call`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import F
from django.db.models.functions import Coalesce

from ..models import Feedback
from .payloads import feedback_payload

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User


def feedback_mine(
    *, answer_ids: Collection[int], user: _User | None, visitor: str | None
) -> dict[int, dict[str, Any]]:
    """The feedback of ``user`` (or of the visitor with public id ``visitor``) on these
    answers, as payloads by answer id: what their page shows again after a reload."""
    rows = Feedback.objects.filter(answer_id__in=answer_ids)
    rows = (
        rows.filter(visitor__public_id=visitor) if visitor is not None else rows.filter(user=user)
    )
    return {row.answer_id: feedback_payload(row) or {} for row in rows}


def feedback_rows(
    *, since: datetime | None = None, rating: str | None = None
) -> Iterator[Feedback]:
    """Every feedback (changed since ``since``, of ``rating``), oldest first, streamed from
    the database a chunk at a time; each with its answer's room."""
    rows = Feedback.objects.select_related("answer__room").order_by("updated_at", "pk")
    if since is not None:
        rows = rows.filter(updated_at__gte=since)
    if rating is not None:
        rows = rows.filter(rating=rating)
    return rows.iterator(chunk_size=500)


def feedback_by_exchange(*, since: datetime | None = None) -> Iterator[Feedback]:
    """Every feedback (changed since ``since``) ordered by the first version of its answer
    (``exchange``: an answer regenerated shares its first's), so that the versions of one
    answer come together; streamed."""
    rows = (
        Feedback.objects.select_related("answer__room")
        # django-stubs takes the annotation for a new attribute; Feedback declares it.
        .annotate(exchange=Coalesce(F("answer__version_of_id"), F("answer_id")))  # type: ignore[no-redef]
        .order_by("exchange", "answer_id", "pk")  # type: ignore[misc]
    )
    if since is not None:
        rows = rows.filter(updated_at__gte=since)
    return rows.iterator(chunk_size=500)
