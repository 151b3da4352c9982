"""The room list's live socket: a logged-in user's pages hear when their rooms change.

The socket says only that something changed (``{"type": "rooms_changed"}``); the page then
asks for its room list again, with its session, as a reload would. So nothing a user may not
see travels on it, and the list is rendered in one place (the template). The nudges travel
as ``parley.access`` events for the user, which every process's hub hands to each socket of
that user (:mod:`parley.realtime.access`); the receivers below publish them when an
invitation is made or answered, a membership made, or a room renamed (its own sockets then
get a ``room`` frame too). A membership ended and a room deleted publish revocations
already, which nudge too. The events that end a user's
room sockets end this one as well: a logout, a new password, a deactivated account.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from .. import metrics, protocol
from ..conf import get_config
from ..exceptions import LayerUnavailable
from ..models import Invitation, Membership, Room
from ..protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_RATE_LIMITED,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
)
from ..rooms import payloads
from . import access, auth, consumers
from .db import database_call
from .hub import get_hub
from .origins import origin_embeds_only
from .outbox import Outbox

ROOMS_CHANGED = protocol.encode({"type": "rooms_changed"})


class InboxConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """One page's socket of a logged-in user's room list. It takes no frames. It counts
    against the user's ``SOCKETS_PER_USER``, and the periodic re-check of rights covers it
    (its grant names no room: ``access.NO_ROOM``)."""

    grant: access.Grant | None = None
    outbox: Outbox
    revoked = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token = next(consumers.socket_tokens)

    async def connect(self) -> None:
        user, room, session_key, visitor = await database_call(auth.socket_user, self.scope)
        await self.accept()
        config = get_config()
        self.outbox = Outbox(self.send, limit=config.max_backlog, on_overflow=self._overflow)
        if visitor is not None or not user.is_authenticated:
            self.revoke("unauthenticated", "Log in to follow your rooms.", CLOSE_UNAUTHENTICATED)
            return
        if origin_embeds_only(self.scope) or room is not None:  # a ticket for one room only
            self.revoke("forbidden", "This socket may not follow rooms.", CLOSE_FORBIDDEN)
            return
        grant = access.Grant(user.pk, access.NO_ROOM, session_key, access.auth_hash(user))
        hub = get_hub()
        cap = config.rate_limits["SOCKETS_PER_USER"]
        if cap is not None and hub.user_sockets(grant.user_key) >= cap:
            detail = f"You have {cap} sockets open on this server, the most allowed; close one."
            self.revoke("too_many_sockets", detail, CLOSE_RATE_LIMITED)
            return
        self.grant = grant
        try:
            await hub.follow(grant.user_key, self, self.token)
        except LayerUnavailable:
            self.grant = None
            self.revoke(
                "unavailable", "The server cannot reach its channel layer.", CLOSE_TRY_AGAIN
            )
            return
        self.outbox.put(protocol.encode({"type": "hello", "v": protocol.VERSION}))

    async def disconnect(self, code: int) -> None:
        if self.grant is not None:
            await get_hub().unfollow(self.grant.user_key, self, self.token)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Frames from the page are ignored: there is nothing to ask this socket."""

    def deliver(self, frame: str) -> None:
        """The inbox is in no room: no room frame is for it."""

    def on_access(self, event: dict[str, Any]) -> None:
        assert self.grant is not None  # the hub calls only sockets it follows
        refusal = access.revocation(event, self.grant)
        if refusal is not None:
            self.revoke(*refusal)
        elif not self.revoked and ("room" in event or "rooms" in event):
            self.outbox.put(ROOMS_CHANGED)

    def revoke(self, code: str, detail: str, close_code: int) -> None:
        if self.revoked:
            return
        self.revoked = True
        metrics.error_frames.labels(code).inc()
        metrics.sockets_closed.labels(str(close_code)).inc()
        self.outbox.put(protocol.encode(protocol.error(code, detail)))
        asyncio.ensure_future(self.close(code=close_code))

    def _overflow(self, backlog: object) -> None:
        metrics.sockets_closed.labels(str(protocol.CLOSE_TOO_SLOW)).inc()
        self.outbox.close()
        asyncio.ensure_future(self.close(code=protocol.CLOSE_TOO_SLOW))


def _nudge(*users: Any) -> None:
    """Tell the room lists of ``users`` (primary keys) that their rooms changed, once the
    transaction commits."""
    for user in users:
        access.publish_on_commit({"user": str(user), "rooms": True})


@receiver(post_save, sender=Invitation)
def _invitation_saved(sender: Any, instance: Invitation, raw: bool, **kwargs: Any) -> None:
    if not raw:  # made (the invitee's list shows it) or answered (their other pages)
        _nudge(instance.invitee_id)


@receiver(post_save, sender=Membership)
def _membership_saved(
    sender: Any, instance: Membership, created: bool, raw: bool, **kwargs: Any
) -> None:
    if created and not raw:
        _nudge(instance.user_id)


@receiver(post_save, sender=Room)
def _room_saved(sender: Any, instance: Room, created: bool, raw: bool, **kwargs: Any) -> None:
    fields = kwargs.get("update_fields")
    if created or raw or (fields is not None and "title" not in fields):
        return
    # Renamed, perhaps: the room's own sockets get its new payload, the lists a nudge.
    group = instance.group_name
    event = protocol.frame_event(protocol.room(payloads.room_payload(instance)), group=group)
    send = functools.partial(access.group_send_from_thread, group, event)
    transaction.on_commit(send, robust=True)
    _nudge(*instance.memberships.values_list("user_id", flat=True))
