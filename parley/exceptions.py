from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ImproperlyConfigured


class ParleyError(Exception):
    """Base class of Parley's errors."""


class ProtocolError(ParleyError):
    """A client frame Parley cannot accept. ``code`` is stable; ``detail`` is for people."""

    def __init__(self, code: str, detail: str, client_id: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.client_id = client_id  # of the refused send frame, when it named a valid one


class NotAuthenticated(ParleyError):
    """Nobody is logged in on this socket (no session, an invalid or expired ticket)."""


class RoomPermissionDenied(ParleyError):
    """The user may not do this in this room. Not named ``PermissionDenied``: that is
    Django's, which its views turn into a 403 page; this one each caller answers itself."""


class RateLimited(ParleyError):
    """The user has done this too often lately (``RATE_LIMITS``); ``retry_after`` is how many
    seconds until they may again."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(ParleyError):
    """The asker's quota is spent (a :class:`~parley.models.Quota`, or a visitor's
    ``VISITORS["DAILY_MESSAGES"]``); ``renews_at`` is when it is renewed."""

    def __init__(self, message: str, *, renews_at: datetime) -> None:
        super().__init__(message)
        self.renews_at = renews_at


class QueueFull(ParleyError):
    """The room's queue holds ``MAX_WAITING_QUESTIONS`` questions already."""


class AssistantBusy(ParleyError):
    """The room already has an answer streaming: one answer at a time per room."""


class NothingToCancel(ParleyError):
    """A stop asked for an answer that is not streaming in the room (finished, or never was)."""


class NothingToRegenerate(ParleyError):
    """A regeneration asked for something that is not a finished answer of the room."""


class NotEditable(ParleyError):
    """An edit of something that is not the sender's own message of the room, or of a
    question still waiting its turn."""


class BackendError(ParleyError):
    """An assistant backend failed in a way worth telling the room (upstream down, bad reply).

    The message (``str(exc)``) is shown to every member of the room and stored with the
    answer: a plain sentence, without secrets or internal addresses. ``detail`` is for whoever
    runs the site (the model server's URL, its status and its own words): it is logged, never
    sent.
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class MissingDependency(ImproperlyConfigured, ImportError):
    """An optional extra is not installed. An ``ImportError`` too, so that code importing
    backends by dotted path (the backend handler, the system checks) reports it as such."""


class LayerUnavailable(ParleyError):
    """The channel layer (Redis) cannot be reached, so nothing can be sent to other sockets."""
