"""The wire form of one's feedback on an answer (docs/protocol.md)."""

from __future__ import annotations

from typing import Any

from ..models import Feedback


def feedback_payload(feedback: Feedback | None) -> dict[str, Any] | None:
    """``{"rating", "comment"}`` of a feedback, or None for none."""
    if feedback is None:
        return None
    return {"rating": feedback.rating, "comment": feedback.comment}
