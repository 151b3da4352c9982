"""Parley's pages: the room list and a room's chat page. Views validate forms, call
services and render; the chat itself runs over the room socket (consumers.py)."""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from prometheus_client import CONTENT_TYPE_LATEST

from .conf import get_config
from .contrib import prometheus
from .exceptions import RateLimited, RoomPermissionDenied
from .forms import InviteForm, RoomCreateForm, RoomTitleForm
from .knowledge.permissions import Reader
from .knowledge.sources import FILES
from .knowledge.store import document_text
from .middleware import add_content_security_policy
from .models import Room
from .realtime.db import export_stream
from .realtime.health import readiness
from .realtime.routing import inbox_socket_path, socket_path
from .realtime.status import status_snapshot
from .rendering import render_document
from .rooms import export, selectors, services
from .search.selectors import messages_search
from .search.text import QueryTooLong
from .tools.approvals import is_approver

if TYPE_CHECKING:
    from django.contrib.auth.models import _User

    class AuthenticatedHttpRequest(HttpRequest):
        """What a view behind ``login_required`` receives: the user is logged in. The
        plugin of django-stubs expands ``_User`` to the site's ``AUTH_USER_MODEL``."""

        user: _User


View = TypeVar("View", bound=Callable[..., Any])
R = TypeVar("R", bound=HttpResponse)  # a response passed through, its type kept


def content_security_policy(view: View) -> View:
    """Send Parley's strict Content-Security-Policy with the view's responses (Django 5.2 has
    none built in), for projects that do not install
    :class:`parley.middleware.ContentSecurityPolicyMiddleware`. An existing header is left
    alone."""

    if iscoroutinefunction(view):

        @wraps(view)
        async def awaited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return add_content_security_policy(request, await view(request, *args, **kwargs))

        return cast(View, awaited)

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return add_content_security_policy(request, view(request, *args, **kwargs))

    return cast(View, wrapped)


def _room_for_member(request: AuthenticatedHttpRequest, public_id: str) -> Room:
    """The room if the user is a member; otherwise 404, whether or not it exists."""
    try:
        return selectors.room_get_for_member(public_id=public_id, user=request.user)
    except RoomPermissionDenied:
        raise Http404("No such room.") from None


ROOMS_PER_PAGE = 50


def _isolated(text: str) -> str:
    """``text`` between first-strong and pop isolates (U+2068, U+2069), the plain-text
    ``<bdi>``: for names and titles inside a flash message, which is text, not markup."""
    return f"\u2068{text}\u2069"


def _wait(seconds: float) -> str:
    """A wait in words, rounded up: "a minute", "3 minutes"."""
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


@content_security_policy
@login_required
@require_http_methods(["GET", "POST"])
def room_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's rooms (50 a page), the invitations waiting for their answer, the form
    that creates a room (POST, within ``RATE_LIMITS["ROOMS"]``), and the search of their
    rooms' messages (``?q=``)."""
    form = RoomCreateForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            services.user_rate_limit(user=request.user, action="ROOMS")
        except RateLimited as exc:
            form.add_error(
                None,
                "You have created many rooms in a short time. "
                f"Try again in {_wait(exc.retry_after)}.",
            )
            status = 429
        else:
            room = services.room_create(
                owner=request.user,
                title=form.cleaned_data["title"],
                kind=form.cleaned_data["kind"],
            )
            return redirect("parley:room", public_id=room.public_id)
    context = {
        "page": selectors.rooms_page(
            user=request.user, number=request.GET.get("page"), per_page=ROOMS_PER_PAGE
        ),
        "invitations": selectors.invitations_pending(user=request.user),
        "form": form,
        "inbox_socket_path": inbox_socket_path(),
        **_search(request),
    }
    return render(request, "parley/rooms.html", context, status=status)


def _search(request: AuthenticatedHttpRequest) -> dict[str, Any]:
    """The room list's search of messages (``?q=``, and ``?results=`` for a page of hits
    after the first): what the page shows of it."""
    query = request.GET.get("q", "")
    size = get_config().search_page_size
    try:
        number = max(1, int(request.GET.get("results", "1")))
    except ValueError:
        number = 1
    try:
        results = messages_search(
            user=request.user, query=query, limit=size, offset=(number - 1) * size
        )
    except QueryTooLong as exc:
        return {"query": query, "search_error": str(exc)}
    return {"query": query.strip(), "results": results, "results_page": number}


@content_security_policy
@login_required
@require_http_methods(["GET"])
def room_detail(request: AuthenticatedHttpRequest, public_id: str) -> HttpResponse:
    """A room's chat page (404 for anyone but its members)."""
    room = _room_for_member(request, public_id)
    context = {
        "room": room,
        "socket_path": socket_path(room.public_id),
        "members": selectors.room_members(room=room),
        "invite_form": InviteForm() if room.kind == Room.Kind.SHARED else None,
        "can_leave": room.kind == Room.Kind.SHARED and request.user.pk != room.owner_id,
        "is_owner": request.user.pk == room.owner_id,
        "rename_form": RoomTitleForm(initial={"title": room.title}),
        "approver": is_approver(request.user),
    }
    return render(request, "parley/room.html", context)


@content_security_policy
@login_required
@require_http_methods(["GET"])
def knowledge_document(request: AuthenticatedHttpRequest, key: str) -> HttpResponse:
    """A document of the knowledge folders, rendered (the assistant's source links point
    here). Only indexed documents are served, to users who may read them; 404 otherwise."""
    found = document_text(source=FILES, key=key)
    if found is None or not Reader(request.user).document_allowed(FILES, key):
        raise Http404("No such document.")
    title, text = found
    context = {"title": title, "key": key, "html": render_document(text)}
    return render(request, "parley/knowledge.html", context)


@content_security_policy
@login_required
@require_POST
def room_invite(request: AuthenticatedHttpRequest, public_id: str) -> HttpResponse:
    """Invite a user, by username, to a shared room. The answer is the same whether or not
    the name exists (nobody learns from it who has an account); the invitee joins only by
    accepting."""
    room = _room_for_member(request, public_id)
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Type the username of the person to invite.")
        return redirect("parley:room", public_id=room.public_id)
    username = form.cleaned_data["username"].strip()
    try:
        services.invitation_create(room=room, by=request.user, username=username)
    except RoomPermissionDenied as exc:
        messages.error(request, str(exc))
    except RateLimited as exc:
        messages.error(
            request,
            "You have sent many invitations in a short time. "
            f"Try again in {_wait(exc.retry_after)}.",
        )
    else:
        messages.success(
            request,
            f"If “{_isolated(username)}” has an account here, they are invited: they join "
            "the room when they accept.",
        )
    return redirect("parley:room", public_id=room.public_id)


@content_security_policy
@login_required
@require_POST
def room_rename(request: AuthenticatedHttpRequest, public_id: str) -> HttpResponse:
    """Give a room a new title (its owner only); its members' pages show it at once."""
    room = _room_for_member(request, public_id)
    form = RoomTitleForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(error) for error in form.errors["title"]))
        return redirect("parley:room", public_id=room.public_id)
    try:
        # Each rename reaches every member's open pages: limited as creating rooms is.
        services.user_rate_limit(user=request.user, action="ROOMS")
        services.room_rename(room=room, by=request.user, title=form.cleaned_data["title"])
    except RoomPermissionDenied as exc:
        messages.error(request, str(exc))
    except RateLimited as exc:
        messages.error(request, f"You renamed rooms often; try again in {_wait(exc.retry_after)}.")
    else:
        messages.success(request, f"The room is now called “{_isolated(room.title)}”.")
    return redirect("parley:room", public_id=room.public_id)


@content_security_policy
@login_required
@require_http_methods(["GET", "POST"])
def room_delete(request: AuthenticatedHttpRequest, public_id: str) -> HttpResponse:
    """Delete a room (its owner only): GET asks to confirm, saying what goes; POST deletes
    it, with its messages, for every member, whose open pages are told at once."""
    room = _room_for_member(request, public_id)
    if request.user.pk != room.owner_id:
        messages.error(request, "Only the room's owner may delete it.")
        return redirect("parley:room", public_id=room.public_id)
    if request.method == "GET":
        context = {
            "room": room,
            "message_count": selectors.room_message_count(room=room),
            "member_count": len(selectors.room_members(room=room)),
        }
        return render(request, "parley/room_delete.html", context)
    title = room.title
    deleted = services.room_delete(room=room, by=request.user)
    messages.success(request, f"“{_isolated(title)}” and its {deleted} messages were deleted.")
    return redirect("parley:rooms")


@content_security_policy
@login_required
@require_POST
def room_member_remove(
    request: AuthenticatedHttpRequest, public_id: str, user_id: int
) -> HttpResponse:
    """Take a member out of a room (its owner only): their open pages of it are closed."""
    room = _room_for_member(request, public_id)
    member = next((m for m in selectors.room_members(room=room) if m.pk == user_id), None)
    if member is None:
        raise Http404("No such member.")
    try:
        services.room_member_remove(room=room, user=member, by=request.user)
    except RoomPermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        name = _isolated(member.get_username())
        messages.success(request, f"“{name}” is no longer a member; they can be invited again.")
    return redirect("parley:room", public_id=room.public_id)


@content_security_policy
@login_required
@require_POST
def room_leave(request: AuthenticatedHttpRequest, public_id: str) -> HttpResponse:
    """Leave a room (not one's own): its page and its socket are closed to the user."""
    room = _room_for_member(request, public_id)
    try:
        services.room_member_remove(room=room, user=request.user, by=request.user)
    except RoomPermissionDenied as exc:
        messages.error(request, str(exc))
        return redirect("parley:room", public_id=room.public_id)
    messages.success(request, f"You left “{_isolated(room.title)}”.")
    return redirect("parley:rooms")


@content_security_policy
@login_required
@require_POST
def invitation_answer(
    request: AuthenticatedHttpRequest, invitation_id: int, accept: bool
) -> HttpResponse:
    """Accept (then go to the room) or decline an invitation waiting for this user; 404 for
    any other."""
    try:
        invitation = services.invitation_answer(
            invitation_id=invitation_id, user=request.user, accept=accept
        )
    except RoomPermissionDenied:
        raise Http404("No such invitation.") from None
    if accept:
        return redirect("parley:room", public_id=invitation.room.public_id)
    title = _isolated(invitation.room.title)
    messages.info(
        request, f"You declined the invitation to “{title}”: its members cannot invite you again."
    )
    return redirect("parley:rooms")


@content_security_policy
@login_required
@require_http_methods(["GET"])
def room_export(
    request: AuthenticatedHttpRequest, public_id: str, fmt: str
) -> StreamingHttpResponse:
    """The room's whole history as a file to keep, for its members (404 otherwise):
    ``fmt`` is ``md`` (a transcript) or ``json`` (the messages as the protocol gives them)."""
    room = _room_for_member(request, public_id)
    chunks, kind = (
        (export.export_json(room), "application/json")
        if fmt == "json"
        else (export.export_markdown(room), "text/markdown")
    )
    response = StreamingHttpResponse(export_stream(chunks), content_type=f"{kind}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="parley-{room.public_id}.{fmt}"'
    return response


@require_http_methods(["GET", "HEAD"])
async def healthz(request: HttpRequest) -> JsonResponse:
    """Live: the process answers (nothing else is checked: see parley/realtime/health.py)."""
    return _uncached(JsonResponse({"status": "ok"}))


@require_http_methods(["GET", "HEAD"])
async def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: the database and the channel layer answer; 503 with the failing check if not."""
    ready, checks = await readiness()
    body = {"status": "ok" if ready else "unavailable", **checks}
    return _uncached(JsonResponse(body, status=200 if ready else 503))


@require_http_methods(["GET", "HEAD"])
async def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus scrape (docs/operations.md): for staff, or a client that sends
    ``Authorization: Bearer`` with ``METRICS_TOKEN``; 401 otherwise."""
    token = get_config().metrics_token
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        sent = ""
    if not (token and sent and hmac.compare_digest(sent.encode(), token.encode())):
        user = await request.auser()
        if not user.is_staff:
            response = HttpResponse("A staff login or the metrics token is needed.", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="parley-metrics"'
            return response
    # Off the loop: in multiprocess mode it reads every process's files.
    body = await asyncio.to_thread(prometheus.exposition)
    return _uncached(HttpResponse(body, content_type=CONTENT_TYPE_LATEST))


def _uncached(response: R) -> R:
    response["Cache-Control"] = "no-store"
    return response


@content_security_policy
async def status(request: HttpRequest) -> JsonResponse:
    """This process's live state, for staff and monitoring: rooms it serves, sockets per
    room, backlogs, answers it is generating."""
    user = await request.auser()
    if not user.is_staff:
        raise Http404("No such page.")
    return JsonResponse(status_snapshot())
