"""A visitor who logs in keeps their conversation: it becomes their account's."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import user_logged_in
from django.dispatch import receiver

from .services import SESSION_VISITOR, visitor_carry_over, visitor_find

logger = logging.getLogger(__name__)


@receiver(user_logged_in)
def _carry_over(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    public_id = session.pop(SESSION_VISITOR, None) if session is not None else None
    visitor = visitor_find(session_id=public_id) if public_id else None
    if visitor is not None:
        rooms = visitor_carry_over(visitor=visitor, user=user)
        logger.info("a visitor logged in as user %s: %d conversation(s) carried over", user.pk,
                    len(rooms))  # fmt: skip
