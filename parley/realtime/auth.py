"""Who is on a socket (a ticket's user, an outer middleware's, or the Django session's), and
whether they may join its room: :func:`socket_admit`, which the room consumer calls itself.

Tickets are short-lived signed tokens for clients that carry no session cookie.

A ticket names a user and, optionally, one room. It travels in the query string
(``/ws/rooms/<id>/?ticket=...``), so it expires quickly (``PARLEY["TICKET_MAX_AGE"]``), opens
one socket only (a replay is refused and logged), and is bound, through a
:class:`~parley.models.Ticket` row, to the user's session auth hash (a password change ends
it) and to the session it was issued from, if any (logging out ends it).
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from http.cookies import SimpleCookie
from importlib import import_module
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from ..conf import get_config
from ..contrib.orm import ticket_spend, user_get
from ..exceptions import NotAuthenticated, RoomPermissionDenied
from ..models import Room, Ticket, Visitor
from ..rooms.selectors import room_get_for_member, room_get_for_visitor
from .access import Grant, auth_hash, sessions_users
from .origins import origin_embeds_only

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User

logger = logging.getLogger(__name__)

SALT = "parley.websocket-ticket"


class TicketReplayed(signing.BadSignature):
    """A ticket that has already opened its sockets."""


class Claims(NamedTuple):
    """What a valid ticket admits: its user, its room (public id, or None for any of the
    user's rooms), the session it was issued from (None if none), and for a ticket issued
    to a visitor who is not logged in, the visitor (then the user is anonymous)."""

    user: _User | AnonymousUser
    room: str | None
    session_key: str | None
    visitor: Visitor | None = None


def ticket_issue(
    *,
    user: _User | None = None,
    room: str | None = None,
    session_key: str | None = None,
    uses: int = 1,
    visitor: Visitor | None = None,
) -> str:
    """A ticket for ``user`` (or for ``visitor``, who is not logged in), limited to the room
    with public id ``room`` when given, ended by a logout of ``session_key`` when given
    (pass ``request.session.session_key`` when issuing from a page). It opens ``uses``
    sockets (one; more only for load generators, which open many with one URL). Writes a
    :class:`~parley.models.Ticket` row, and prunes expired ones."""
    if (user is None) == (visitor is None):
        raise ValueError("A ticket is for a user or for a visitor.")
    if user is not None:
        claims: dict[str, Any] = {"u": user.pk}
        bound = {"session_key": session_key or "", "auth_hash": auth_hash(user)}
    else:
        assert visitor is not None
        claims, bound = {"v": visitor.public_id}, {"session_key": "", "auth_hash": ""}
    now = timezone.now()
    Ticket.objects.filter(expires_at__lte=now).delete()
    nonce = secrets.token_urlsafe(16)
    Ticket.objects.create(
        nonce=nonce,
        uses_left=uses,
        expires_at=now + timedelta(seconds=get_config().ticket_max_age),
        **bound,
    )
    return signing.dumps({**claims, "r": room, "n": nonce}, salt=SALT, compress=True)


def ticket_read(ticket: str, *, max_age: int | None = None, room: str | None = None) -> Claims:
    """The :class:`Claims` of a valid ticket, spending one of its uses. Raises
    :class:`~django.core.signing.BadSignature` for a forged, expired or spent ticket
    (:class:`TicketReplayed`, logged as a warning), an inactive user, a changed password or
    an ended session; :class:`RoomPermissionDenied` if it is for a room other than ``room``
    (before it is spent: a wrong address does not use it up)."""
    data = signing.loads(ticket, salt=SALT, max_age=max_age or get_config().ticket_max_age)
    if room is not None and data.get("r") not in (None, room):
        raise RoomPermissionDenied("This ticket is for another room.")
    now = timezone.now()
    nonce = data.get("n") or ""
    spent = ticket_spend(nonce=nonce, now=now)
    if spent is None:
        if not Ticket.objects.filter(nonce=nonce, expires_at__gt=now).exists():
            raise signing.BadSignature("unknown ticket")
        who = f"user {data['u']}" if "u" in data else "a visitor"
        logger.warning("a spent ticket of %s was presented again: refused", who)
        raise TicketReplayed("spent ticket")
    issued_session, issued_hash = spent
    if "v" in data:
        return Claims(AnonymousUser(), data.get("r"), None, _visitor_live(data["v"]))
    user = user_get(pk=data["u"])
    if user is None or not user.is_active:
        raise signing.BadSignature("unknown or inactive user")
    if not constant_time_compare(issued_hash, auth_hash(user)):
        raise signing.BadSignature("the user's password changed since the ticket was issued")
    session_key = issued_session or None
    if session_key and sessions_users({session_key}).get(session_key) != str(user.pk):
        raise signing.BadSignature("the session the ticket was issued from has ended")
    return Claims(user, data.get("r"), session_key)


def _visitor_live(public_id: str) -> Visitor:
    """The visitor a ticket names, if visitors are on and it has not logged in since."""
    visitor = Visitor.objects.filter(public_id=public_id, user__isnull=True).first()
    if visitor is None or not get_config().visitors["ENABLED"]:
        raise signing.BadSignature("no such visitor, or visitors are turned off")
    return visitor


def _session_user(session_key: str | None) -> _User | AnonymousUser:
    """The user of a Django session, checked as Django's own ``get_user`` does (session
    auth hash included); anonymous for no or an invalid session."""
    if not session_key:
        return AnonymousUser()
    engine = import_module(settings.SESSION_ENGINE)
    # get_user reads nothing of the request but its session.
    request = SimpleNamespace(session=engine.SessionStore(session_key))
    return get_user(request)  # type: ignore[arg-type]


def _session_key(headers: Any) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            cookie = SimpleCookie()
            cookie.load(value.decode("latin-1"))
            morsel = cookie.get(settings.SESSION_COOKIE_NAME)
            return morsel.value if morsel else None
    return None


def socket_user(scope: dict[str, Any], *, room: str | None = None) -> Claims:
    """The :class:`Claims` of a socket's scope: a ``ticket`` query parameter's if there is
    one (an invalid ticket leaves the socket anonymous; one for a room other than ``room``
    raises :class:`RoomPermissionDenied`); else the user an outer middleware of the host project
    put in ``scope["user"]``, if authenticated; else the Django session cookie's user.
    Synchronous: it reads the database."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        try:
            return ticket_read(query["ticket"][0], room=room)
        except signing.BadSignature:
            return Claims(AnonymousUser(), None, None)
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return Claims(user, None, getattr(scope.get("session"), "session_key", None))
    session_key = _session_key(scope.get("headers", ()))
    return Claims(_session_user(session_key), None, session_key)


def socket_admit(scope: dict[str, Any], *, room: str) -> tuple[_User | None, Room, Grant]:
    """The user of a socket's scope (``None`` for a visitor's ticket), the room with public
    id ``room`` if the user (or visitor) may join it, and the
    :class:`~parley.realtime.access.Grant` the socket holds while open; raises
    :class:`NotAuthenticated` or :class:`RoomPermissionDenied`.

    One synchronous call, so that a socket reaches the database thread once to join. The
    consumer calls it rather than a middleware setting ``scope["user"]``: a middleware's
    frame and its copy of the scope would stay in memory for as long as the socket is open,
    and it would cost a second hop to the database thread.
    """
    user, ticket_room, session_key, visitor = socket_user(scope, room=room)
    if visitor is not None:
        if ticket_room != room:
            raise RoomPermissionDenied("This ticket is for another room.")
        found = room_get_for_visitor(public_id=room, visitor_id=visitor.pk)
        return None, found, Grant(None, found.pk, None, "", visitor=visitor.public_id)
    if not user.is_authenticated:
        raise NotAuthenticated("Log in to join this room.")
    if origin_embeds_only(scope):  # another site's page: as a visitor, or not at all
        raise NotAuthenticated("Pages of other sites chat as visitors only.")
    if ticket_room is not None and ticket_room != room:
        raise RoomPermissionDenied("This ticket is for another room.")
    found = room_get_for_member(public_id=room, user=user)
    return user, found, Grant(user.pk, found.pk, session_key, auth_hash(user))
