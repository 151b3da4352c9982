"""Who is on a socket (a ticket's user, an outer middleware's, or the Django session's), and
whether they may join its room: :func:`socket_admit`, which the room consumer calls itself.

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

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing

from .conf import get_config
from .exceptions import NotAuthenticated, PermissionDenied
from .models import Room
from .services import room_get_for_member

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


def socket_user(scope: dict[str, Any]) -> tuple[Any, str | None]:
    """``(user, ticket room)`` for a socket's scope: a ``ticket`` query parameter if there is
    one (an invalid ticket leaves the socket anonymous); else the user an outer middleware of
    the host project put in ``scope["user"]``, if authenticated; else the Django session
    cookie's user. Synchronous: it reads the database."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        try:
            return ticket_read(query["ticket"][0])
        except signing.BadSignature:
            return AnonymousUser(), None
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return user, None
    return _session_user(_session_key(scope.get("headers", ()))), None


def socket_admit(scope: dict[str, Any], *, room: str) -> tuple[Any, Room]:
    """The user of a socket's scope and the room with public id ``room``, if the user may
    join it; raises :class:`NotAuthenticated` or :class:`PermissionDenied`.

    One synchronous call, so that a socket reaches the database thread once to join. The
    consumer calls it rather than a middleware setting ``scope["user"]``: a middleware's
    frame and its copy of the scope would stay in memory for as long as the socket is open,
    and it would cost a second hop to the database thread.
    """
    user, ticket_room = socket_user(scope)
    if not user.is_authenticated:
        raise NotAuthenticated("Log in to join this room.")
    if ticket_room is not None and ticket_room != room:
        raise PermissionDenied("This ticket is for another room.")
    return user, room_get_for_member(public_id=room, user=user)
