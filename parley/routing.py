"""The public path of Parley's socket routes: see :mod:`parley.realtime.routing`."""

from __future__ import annotations

from .realtime.routing import websocket_application, websocket_urlpatterns

__all__ = ["websocket_application", "websocket_urlpatterns"]
