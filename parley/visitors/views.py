"""The embedded chat's one endpoint: who is asking, their conversation, and a socket ticket.

``POST`` from the site's own pages is answered for the logged-in user, or else (when
``VISITORS["ENABLED"]``) for the session's visitor. From an origin that
``PARLEY["EMBED_ORIGINS"]`` (or ``ALLOWED_ORIGINS``) lists, cookies are neither sent nor read:
the answer is for the visitor named by the token the embed keeps, or by an identity the host
signed (CORS allows exactly that origin). Every other origin gets 403.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..exceptions import RateLimited
from ..models import Room, Visitor
from ..realtime.auth import ticket_issue
from ..realtime.origins import origin_embedding, origin_listed, origin_same
from ..realtime.routing import socket_path
from ..rooms.payloads import room_payload
from ..throttling import page_limit_take
from . import services
from .addresses import request_address

# Most bytes of a request's JSON: a token and an identity with its signature.
MAX_BODY = 4096


def _refuse(status: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "detail": detail, **extra}}, status=status)


def _limited(exc: RateLimited, detail: str) -> JsonResponse:
    return _refuse(429, "rate_limited", detail, retry_after=round(exc.retry_after, 1))


@csrf_exempt  # no cookie-authenticated change: it is checked by Origin, as the sockets are
def chat_session(request: HttpRequest) -> HttpResponse:
    """See the module. The JSON body may hold ``visitor`` (a token from an earlier answer),
    ``identity`` and ``identity_hash``. The answer: ``room`` (its payload), ``socket`` (the
    path of its socket with a single-use ticket: ask again for each connection),
    ``visitor`` (a token to keep, cross-origin only) and ``user`` (a name, or null). Each
    request counts against ``RATE_LIMITS["CHAT_SESSIONS"]`` of the client address."""
    origin = request.headers.get("Origin")
    own = origin is None or origin_same(origin, f"{request.scheme}://{request.get_host()}")
    if not own and not (origin_listed(origin or "") or origin_embedding(origin or "")):
        return _refuse(403, "forbidden_origin", "This origin may not embed the chat.")
    if request.method == "OPTIONS":
        response: HttpResponse = HttpResponse(status=204)
    elif request.method != "POST":
        response = _refuse(405, "method_not_allowed", "POST only.")
    else:
        response = _answer(request, cross_origin=not own)
    if not own:
        assert origin is not None
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "POST"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = "600"
    response["Vary"] = "Origin"
    response["Cache-Control"] = "no-store"
    return response


def _answer(request: HttpRequest, *, cross_origin: bool) -> HttpResponse:
    if len(request.body) > MAX_BODY:
        return _refuse(413, "too_large", "The request is too large.")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _refuse(400, "bad_request", "The body must be JSON.")
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        return _refuse(400, "bad_request", "The body must be an object of strings.")
    try:
        page_limit_take(action="CHAT_SESSIONS", key=request_address(request))
    except RateLimited as exc:
        return _limited(exc, "Too many requests from your network.")
    user = getattr(request, "user", None)
    if not cross_origin and user is not None and user.is_authenticated:
        room = services.conversation_for_user(user=user)
        ticket = ticket_issue(
            user=user, room=room.public_id, session_key=request.session.session_key
        )
        return _session(room, ticket, name=user.get_username())
    if not services.visitors_enabled():
        return _refuse(401, "login_required", "Log in to talk to the assistant.")
    try:
        visitor = _visitor(request, body, cross_origin=cross_origin)
    except services.IdentityRefused as exc:
        return _refuse(403, "identity_refused", str(exc))
    except RateLimited as exc:
        return _limited(exc, "Too many new conversations from your network.")
    room = services.conversation_for_visitor(visitor=visitor)
    ticket = ticket_issue(visitor=visitor, room=room.public_id)
    token = services.visitor_token(visitor) if cross_origin and not visitor.identity else None
    return _session(room, ticket, name=None, visitor=token)


def _visitor(request: HttpRequest, body: dict[str, str], *, cross_origin: bool) -> Visitor:
    """The visitor asking (found again, or new), kept by the session on the site's own pages
    unless the host named it by a signed identity (then the identity finds it, and the next
    person at that browser does not); raises :class:`services.IdentityRefused` or
    :class:`RateLimited`."""
    identity, signature = body.get("identity", "").strip(), body.get("identity_hash", "")
    if identity:
        found = services.visitor_find(identity=identity, signature=signature)
    elif cross_origin:
        found = services.visitor_find(token=body.get("visitor"))
    else:
        found = services.visitor_find(session_id=request.session.get(services.SESSION_VISITOR))
    if found is None:
        found = services.visitor_create(
            address=request_address(request), identity=identity, signature=signature
        )
        if not cross_origin and not identity:
            request.session[services.SESSION_VISITOR] = found.public_id
    return found


def _session(
    room: Room, ticket: str, *, name: str | None, visitor: str | None = None
) -> HttpResponse:
    return JsonResponse(
        {
            "room": room_payload(room),
            "socket": f"{socket_path(room.public_id)}?ticket={ticket}",
            "user": {"name": name} if name else None,
            "visitor": visitor,
        }
    )
