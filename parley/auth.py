"""Who is on a socket: the Django session's user, or a ticket's.

Tickets are short-lived signed tokens for clients that carry no session cookie.

A ticket names a user and, optionally, one room. It travels in the query string
(``/ws/rooms/<id>/?ticket=...``), so it expires quickly (``PARLEY["TICKET_MAX_AGE"]``).
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
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


def _session_user(session_key: str | None) -> Any:
    """The user of a Django session, checked as Django's own ``get_user`` does (session
    auth hash included); anonymous for no or an invalid session."""
    if not session_key:
        return AnonymousUser()
    engine = import_module(settings.SESSION_ENGINE)
    return get_user(SimpleNamespace(session=engine.SessionStore(session_key)))  # type: ignore[arg-type]


def _session_key(headers: Any) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            cookie = SimpleCookie()
            cookie.load(value.decode("latin-1"))
            morsel = cookie.get(settings.SESSION_COOKIE_NAME)
            return morsel.value if morsel else None
    return None


def _authenticate(scope: dict[str, Any]) -> tuple[Any, str | None]:
    """``(user, ticket room)`` for a socket's scope: a ``ticket`` query parameter if there
    is one (an invalid ticket leaves the socket anonymous), else the session cookie."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        try:
            return ticket_read(query["ticket"][0])
        except signing.BadSignature:
            return AnonymousUser(), None
    return _session_user(_session_key(scope.get("headers", ()))), None


class SocketAuthMiddleware:
    """Sets ``scope["user"]`` from a ticket or the Django session cookie.

    Channels' ``AuthMiddlewareStack`` (cookies, session, user) would do for the session, but
    every socket would keep the session object, its data, three middleware frames and three
    copies of the scope for as long as it is open. Parley's sockets never write to the
    session, so this keeps only the user (and a ticket's room in ``parley_ticket_room``).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        user, room = await database_sync_to_async(_authenticate)(scope)
        return await self.inner({**scope, "user": user, "parley_ticket_room": room}, receive, send)
