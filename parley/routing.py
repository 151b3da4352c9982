"""WebSocket routes for the host project's ``URLRouter``, and the stack they need."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.security.websocket import (
    AllowedHostsOriginValidator,
    OriginValidator,
    WebsocketDenier,
)
from django.urls import path

from .consumers import RoomConsumer

websocket_urlpatterns = [
    path("ws/rooms/<str:room>/", RoomConsumer.as_asgi(), name="parley-room-socket"),
]


def websocket_application(inner: Any) -> Any:
    """Wrap a websocket router the way Parley expects: Origin checked against
    ``ALLOWED_HOSTS`` (as Channels' ``AllowedHostsOriginValidator`` does), refusing
    cross-site hijacking. The room consumer authenticates its socket itself (a ticket, the
    user of an outer auth middleware, or the Django session: :func:`parley.auth.socket_admit`).
    """
    return OriginCheck(inner, AllowedHostsOriginValidator(inner).allowed_origins)


class OriginCheck(OriginValidator):
    """Channels' ``OriginValidator`` (the same check) without a coroutine of its own per socket.

    Channels' validator awaits the application, so its frame (with the scope, the parsed
    Origin and the header it came from) stays in memory for as long as the socket is open.
    The check needs no await: this returns the application's (or the denier's) coroutine
    for the server to await.
    """

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "websocket":
            raise ValueError("You cannot use OriginCheck on a non-WebSocket connection")
        if self.valid_origin(_parsed_origin(scope)):
            return self.application(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)


def _parsed_origin(scope: dict[str, Any]) -> ParseResult | None:
    """The last ``Origin`` header, parsed, as Channels' validator reads it; ``None`` for none
    or one that is not a URL (``http://[::1``), which is refused."""
    parsed = None
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            try:
                parsed = urlparse(value.decode("latin1"))
            except ValueError:
                parsed = None
    return parsed
