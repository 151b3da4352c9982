"""Parley's wire format, pure (no I/O): browser frames (:mod:`.frames`), close codes and
refusals (:mod:`.codes`), and the events server processes send each other (:mod:`.events`).

The names below are the package's face: code that speaks the protocol imports
``parley.protocol`` and writes ``protocol.Send``, ``protocol.encode``, ``protocol.CLOSE_…``.
"""

from __future__ import annotations

from .codes import (
    CLOSE_FORBIDDEN,
    CLOSE_RATE_LIMITED,
    CLOSE_ROOM_DELETED,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
    NOT_A_MEMBER,
    ROOM_DELETED,
    SIGNED_OUT,
    Refusal,
)
from .events import cancel_event, frame_event, snapshot_event
from .frames import (
    MAX_SEQ,
    VERSION,
    Cancel,
    ClientFrame,
    Decide,
    Regenerate,
    Resume,
    Send,
    Withdraw,
    ack,
    delta,
    done,
    encode,
    error,
    hello,
    history,
    message,
    parse_client_frame,
    room,
    sync,
    tool,
)

__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_RATE_LIMITED",
    "CLOSE_ROOM_DELETED",
    "CLOSE_TOO_SLOW",
    "CLOSE_TRY_AGAIN",
    "CLOSE_UNAUTHENTICATED",
    "MAX_SEQ",
    "NOT_A_MEMBER",
    "ROOM_DELETED",
    "SIGNED_OUT",
    "VERSION",
    "Cancel",
    "ClientFrame",
    "Decide",
    "Refusal",
    "Regenerate",
    "Resume",
    "Send",
    "Withdraw",
    "ack",
    "cancel_event",
    "delta",
    "done",
    "encode",
    "error",
    "frame_event",
    "hello",
    "history",
    "message",
    "parse_client_frame",
    "room",
    "snapshot_event",
    "sync",
    "tool",
]
