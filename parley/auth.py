"""WebSocket tickets: short-lived signed tokens for clients that carry no session cookie.

A ticket names a user and, optionally, one room. It travels in the query string
(``/ws/rooms/<id>/?ticket=...``), so it expires quickly (``PARLEY["TICKET_MAX_AGE"]``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing

from .conf import get_config

SALT = "parley.websocket-ticket"


def ticket_issue(*, user: AbstractBaseUser, room: str | None = None) -> str:
    """A ticket for ``user``, limited to the room with public id ``room`` when given."""
    return signing.dumps({"u": user.pk, "r": room}, salt=SALT, compress=True)


def ticket_read(ticket: str, *, max_age: int | None = None) -> tuple[Any, str | None]:
    """``(user, room)`` for a valid ticket; raises :class:`django.core.signing.BadSignature`
    (or ``SignatureExpired``) otherwise."""
    data = signing.loads(ticket, salt=SALT, max_age=max_age or get_config().ticket_max_age)
    user = get_user_model()._default_manager.filter(pk=data["u"], is_active=True).first()
    if user is None:
        raise signing.BadSignature("unknown or inactive user")
    return user, data.get("r")


class TicketAuthMiddleware:
    """Sets ``scope["user"]`` from a ``ticket`` query parameter, if there is one. Put it
    inside ``AuthMiddlewareStack``: a valid ticket takes precedence over the session, an
    invalid one leaves the connection anonymous."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "ticket" in query:
            scope = dict(scope)
            try:
                user, room = await database_sync_to_async(ticket_read)(query["ticket"][0])
            except signing.BadSignature:
                user, room = AnonymousUser(), None
            scope["user"] = user
            scope["parley_ticket_room"] = room
        return await self.inner(scope, receive, send)
