"""This process's live state, for the ``/status/`` page (views read it here, never the hub)."""

from __future__ import annotations

from typing import Any

from .. import answers
from .hub import get_hub


def status_snapshot() -> dict[str, Any]:
    """The rooms this process serves (sockets per room), its sockets, how many of them are
    backlogged (their client reads slowly), and the answers it is generating. Call it from
    the server's event loop: each loop has its own hub."""
    hub = get_hub()
    return {
        "worker": answers.WORKER_ID,
        "rooms": {group: len(members) for group, members in hub.rooms.items()},
        "sockets": len(hub.members),
        "backlogged": sum(1 for m in hub.members.values() if m.outbox.backlogged),
        "answers": sorted(answers.answers_running()),
    }
