"""The public path of WebSocket tickets (``parley.auth.ticket_issue``, docs/protocol.md): see
:mod:`parley.realtime.auth`."""

from __future__ import annotations

from .realtime.auth import ticket_issue

__all__ = ["ticket_issue"]
