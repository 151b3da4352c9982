"""WebSocket routes for the host project's ``URLRouter``, and the stack they need."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from channels.security.websocket import WebsocketDenier
from django.urls import URLResolver, path
from django.urls.resolvers import RegexPattern

from ..conf import get_config
from .consumers import RoomConsumer
from .inbox import InboxConsumer
from .origins import origin_allowed

websocket_urlpatterns = [
    path("ws/rooms/<str:room>/", RoomConsumer.as_asgi(), name="parley-room-socket"),
    path("ws/inbox/", InboxConsumer.as_asgi(), name="parley-inbox-socket"),
]


def socket_path(room: str) -> str:
    """The path of the socket of the room with public id ``room``: its route reversed under
    ``PARLEY["SOCKET_PREFIX"]``, where the host mounted :data:`websocket_urlpatterns`."""
    return _prefixed(_routes().reverse("parley-room-socket", room=room))


def inbox_socket_path() -> str:
    """The path of the room list's socket (:mod:`.inbox`), as :func:`socket_path`."""
    return _prefixed(_routes().reverse("parley-inbox-socket"))


def _prefixed(route: str) -> str:
    prefix = "/" + get_config().socket_prefix.strip("/")
    return f"{prefix.rstrip('/')}/{route}"


@functools.cache
def _routes() -> URLResolver:
    """A resolver of the routes, built (and its reverse lookup filled) once: every room page
    and every ticket the widget's endpoint hands out reverses through it."""
    return URLResolver(RegexPattern(r"^/"), websocket_urlpatterns)


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def websocket_application(inner: Any) -> Any:
    """Wrap a websocket router the way Parley expects: the handshake's Origin must be the
    site's own origin (scheme, host and port) or one listed in ``CSRF_TRUSTED_ORIGINS``,
    ``PARLEY["ALLOWED_ORIGINS"]`` or ``PARLEY["EMBED_ORIGINS"]`` (:class:`OriginCheck`),
    refusing cross-site hijacking. The room consumer authenticates its socket itself (a
    ticket, the user of an outer auth middleware, or the Django session:
    :func:`parley.auth.socket_admit`).
    """
    return OriginCheck(inner)


class OriginCheck:
    """Admit a WebSocket handshake only from the site's own pages, as Django's CSRF check
    admits a POST: the ``Origin`` header must equal the origin the handshake was made to
    (``http``/``https`` for ``ws``/``wss``, or as ``SECURE_PROXY_SSL_HEADER`` says behind a
    proxy, with the ``Host`` header, which must match ``ALLOWED_HOSTS``), or match an entry
    of ``CSRF_TRUSTED_ORIGINS`` or ``PARLEY["ALLOWED_ORIGINS"]`` (exact, or
    ``https://*.example.com`` for subdomains), or of ``PARLEY["EMBED_ORIGINS"]`` (whose
    pages the consumer admits as visitors only: :mod:`parley.realtime.origins`). No Origin,
    ``null``, one that is not a URL and any scheme but http(s) are refused (HTTP 403),
    whatever ``ALLOWED_HOSTS`` says.

    The check needs no await: it returns the application's (or the denier's) coroutine for
    the server to await, so no frame of its own stays in memory while the socket is open.
    Settings are read at each handshake, never at import.
    """

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "websocket":
            raise ValueError("You cannot use OriginCheck on a non-WebSocket connection")
        if origin_allowed(scope):
            return self.application(scope, receive, send)
        denied: Awaitable[None] = WebsocketDenier()(scope, receive, send)  # channels: untyped
        return denied
