"""WebSocket routes for the host project's ``URLRouter``, and the stack they need."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .auth import SocketAuthMiddleware
from .consumers import RoomConsumer

websocket_urlpatterns = [
    path("ws/rooms/<str:room>/", RoomConsumer.as_asgi(), name="parley-room-socket"),
]


def websocket_application(inner: Any) -> Any:
    """Wrap a websocket router the way Parley expects: Origin checked against
    ``ALLOWED_HOSTS`` (refusing cross-site hijacking), then the user from a ticket or the
    Django session (:class:`~parley.auth.SocketAuthMiddleware`)."""
    return AllowedHostsOriginValidator(SocketAuthMiddleware(inner))
