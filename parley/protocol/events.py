"""Channel-layer events: what one server process tells another (not what a browser sees).

Every event is a dict with a ``type`` the receiving hub dispatches on. Frames for browsers
cross the layer already serialised (:func:`frame_event`), once for every member.
"""

from __future__ import annotations

from typing import Any

from .frames import encode

FRAME = "parley.frame"  # a server frame for a room's members (group=) or one member (to=)
CANCEL = "parley.cancel"  # stop the room's running answer
SNAPSHOT = "parley.snapshot"  # send the running answer's text so far to one member
ACCESS = "parley.access"  # a user's rights ended: revoke their sockets
PING = "parley.ping"  # a hub's probe of its own layer channel


def frame_event(frame: dict[str, Any], **address: Any) -> dict[str, Any]:
    """A channel-layer event carrying one server frame, serialised once for every member;
    ``address`` says for whom (``group=``: a room's members, ``to=``: one member)."""
    return {"type": FRAME, "frame": encode(frame), **address}


def cancel_event(*, message_id: int | None, by: str) -> dict[str, Any]:
    """Ask the process running ``message_id`` (None: the room's answer) to stop it."""
    return {"type": CANCEL, "message_id": message_id, "by": by}


def snapshot_event(*, message_id: int, reply_to: dict[str, Any]) -> dict[str, Any]:
    """Ask the process running ``message_id`` for its text so far, sent to ``reply_to``."""
    return {"type": SNAPSHOT, "message_id": message_id, "reply_to": reply_to}
