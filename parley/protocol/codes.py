"""Close codes, and the refusals that end a live socket: every number a client acts on.

After 4401, 4403 and 4404 the browser stops retrying (docs/protocol.md); after the others
it reconnects. Error frames' ``code`` strings are listed with their meaning in docs/protocol.md.
"""

from __future__ import annotations

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_ROOM_DELETED = 4404
CLOSE_TOO_SLOW = 4008  # the client stopped reading: its backlog passed MAX_BACKLOG(_BYTES)
CLOSE_RATE_LIMITED = 4029  # flooding past a rate limit, or one socket too many for the user
CLOSE_TRY_AGAIN = 1013  # the server cannot reach its channel layer yet

# (error code, detail, close code) of a socket refused or revoked.
Refusal = tuple[str, str, int]
NOT_A_MEMBER: Refusal = (
    "forbidden",
    "You are no longer a member of this room.",
    CLOSE_FORBIDDEN,
)
ROOM_DELETED: Refusal = (
    "room_deleted",
    "This room was deleted by its owner.",
    CLOSE_ROOM_DELETED,
)
SIGNED_OUT: Refusal = (
    "unauthenticated",
    "Your session ended (logged out, new password or account closed); log in again.",
    CLOSE_UNAUTHENTICATED,
)
