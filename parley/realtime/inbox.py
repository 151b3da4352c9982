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

from .. import protocol
from ..conf import get_config
from ..models import Invitation, Membership, Room
from ..protocol import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from ..rooms import payloads
from . import access, auth
from .db import database_call
from .hub import get_hub
from .origins import origin_embeds_only
from .outbox import Outbox

ROOMS_CHANGED = protocol.encode({"type": "rooms_changed"})
NO_ROOM = 0  # the room of an inbox's grant: no room has this primary key


class InboxConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """One page's socket of a logged-in user's room list. It takes no frames."""

    grant: access.Grant | None = None
    outbox: Outbox
    revoked = False

    async def connect(self) -> None:
        user, _, session_key, visitor = await database_call(auth.socket_user, self.scope)
        await self.accept()
        self.outbox = Outbox(self.send, limit=get_config().max_backlog, on_overflow=self._overflow)
        if visitor is not None or not user.is_authenticated:
            self.revoke("unauthenticated", "Log in to follow your rooms.", CLOSE_UNAUTHENTICATED)
            return
        if origin_embeds_only(self.scope):
            self.revoke("forbidden", "Pages of other sites cannot follow rooms.", CLOSE_FORBIDDEN)
            return
        self.grant = access.Grant(user.pk, NO_ROOM, session_key, access.auth_hash(user))
        await get_hub().follow(self.grant.user_key, self)
        self.outbox.put(protocol.encode({"type": "hello", "v": protocol.VERSION}))

    async def disconnect(self, code: int) -> None:
        if self.grant is not None:
            await get_hub().unfollow(self.grant.user_key, self)

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
        self.outbox.put(protocol.encode(protocol.error(code, detail)))
        asyncio.ensure_future(self.close(code=close_code))

    def _overflow(self, backlog: object) -> None:
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
