"""Rights on live sockets: what an open room socket was admitted with (its :class:`Grant`), the
revocations pushed to every server process when those rights end, and the periodic re-check
that catches what no signal announced.

A socket is admitted once (:func:`parley.realtime.auth.socket_admit`); without this module it would
keep its room for as long as it stays open. Revocations travel as ``parley.access`` events to
one channel-layer group that every process's hub listens to (:meth:`RoomHub.access_group`),
so they reach sockets on every process when the layer is Redis:

- a membership deleted (``room_member_remove``, the admin, a cascade): the user's sockets in
  that room get ``forbidden`` and close 4403;
- a room deleted (``room_delete``, the admin): its sockets get ``room_deleted`` and close
  4404, and its answer is stopped;
- the user deactivated or deleted, or their session auth hash changed (a new password): all
  their sockets get ``unauthenticated`` and close 4401;
- a logout: the sockets opened with that session (by cookie, or by a ticket issued from it)
  get ``unauthenticated`` and close 4401.

Events name users, rooms and digests of session keys and auth hashes, never the secrets
themselves. A change that sends no signal (a queryset ``update()``, raw SQL, another site
writing the same database) is caught by :func:`access_watch` within ``RECHECK_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model, user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from ..conf import get_config
from ..models import Membership, Room
from ..protocol import NOT_A_MEMBER, ROOM_DELETED, SIGNED_OUT, Refusal, events
from ..rooms import selectors
from . import hub as hubs
from .db import database_call

logger = logging.getLogger(__name__)

# The room of a socket in no room (the room list's, parley/realtime/inbox.py): no room has
# this primary key, and the re-check finds no membership to miss for it.
NO_ROOM = 0

CHECK_BATCH = 200  # sockets re-checked per trip to the database thread (17 ms on SQLite)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a socket was admitted with: who, to which room (its pk), with which session (its
    key, ``None`` for a ticket issued without one), and the user's session auth hash then;
    or, for a visitor who is not logged in, the visitor's public id (and no user)."""

    user_id: Any
    room_id: int
    session_key: str | None
    auth_hash: str
    visitor: str | None = None

    @property
    def user_key(self) -> str:
        """Who, as events name them (a string: primary keys need not be integers)."""
        return visitor_key(self.visitor) if self.visitor is not None else str(self.user_id)


def visitor_key(public_id: str) -> str:
    """How events and limits name a visitor: never like a user's primary key."""
    return f"visitor:{public_id}"


def digest(secret: str) -> str:
    """What events carry instead of a session key or an auth hash."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def auth_hash(user: Any) -> str:
    """The user's session auth hash (``""`` for user models without one)."""
    method = getattr(user, "get_session_auth_hash", None)
    return method() if method is not None else ""


def revocation(event: dict[str, Any], grant: Grant) -> Refusal | None:
    """What a ``parley.access`` event means for a socket admitted with ``grant``: ``None``
    if the socket keeps its rights. Pure."""
    if "visitor" in event:  # logged in (its conversations are an account's now) or deleted
        return SIGNED_OUT if event["visitor"] == grant.visitor else None
    if "room" in event:
        if event["room"] != grant.room_id:
            return None
        return ROOM_DELETED if event.get("deleted") else NOT_A_MEMBER
    if event.get("active") is False:
        return SIGNED_OUT
    if "auth" in event and not constant_time_compare(event["auth"], digest(grant.auth_hash)):
        return SIGNED_OUT
    if "session" in event and grant.session_key is not None:
        return SIGNED_OUT if event["session"] == digest(grant.session_key) else None
    return None


# Pushing revocations ---------------------------------------------------------------------


def access_publish(event: dict[str, Any]) -> None:
    """Send a ``parley.access`` event to every server process. From any thread, without
    waiting: in a server process it goes out through the hub on the server's event loop;
    elsewhere (a management command, a shell, a WSGI process) straight to the channel layer.
    A failure is logged: the periodic re-check closes the sockets later."""
    group_send_from_thread(hubs.access_group_name(), {"type": events.ACCESS, **event})


def group_send_from_thread(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to ``group`` from any thread, without waiting, as
    :func:`access_publish` does."""
    running = hubs.running_hubs()
    if running:
        loop, hub = running[0]
        asyncio.run_coroutine_threadsafe(hub.group_send(group, event), loop)
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception as exc:
        logger.warning("could not push a revocation (%s); the re-check will close it", exc)


def publish_on_commit(event: dict[str, Any], using: str | None = None) -> None:
    """:func:`access_publish` ``event`` once the transaction commits."""
    transaction.on_commit(functools.partial(access_publish, event), using=using, robust=True)


def visitor_revoke_on_commit(public_id: str) -> None:
    """Once the transaction commits, end the open sockets of the visitor ``public_id`` (it
    logged in, or was deleted): they get ``unauthenticated`` and close 4401."""
    publish_on_commit({"user": visitor_key(public_id), "visitor": public_id}, None)


@receiver(pre_delete, sender=Room)
def _room_deleted(sender: Any, instance: Room, using: str, **kwargs: Any) -> None:
    # pre_delete: before the cascade's post_delete of the memberships, so that the sockets
    # hear 4404 (the room is gone), not 4403 (you were removed).
    users = [str(pk) for pk in instance.memberships.values_list("user_id", flat=True)]
    if instance.visitor is not None:
        users.append(visitor_key(instance.visitor.public_id))
    for user in users:
        publish_on_commit({"user": user, "room": instance.pk, "deleted": True}, using)
    # Its answer, whichever process runs it, stops: nobody is left to read it.
    group = instance.control_group_name
    stop = {**events.cancel_event(message_id=None, by="(room deleted)"), "group": group}
    transaction.on_commit(
        functools.partial(group_send_from_thread, group, stop), using=using, robust=True
    )


@receiver(post_delete, sender=Membership)
def _membership_deleted(sender: Any, instance: Membership, using: str, **kwargs: Any) -> None:
    publish_on_commit({"user": str(instance.user_id), "room": instance.room_id}, using)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _user_saved(
    sender: Any, instance: Any, created: bool, raw: bool, using: str, **kwargs: Any
) -> None:
    fields = kwargs.get("update_fields")
    if created or raw or (fields is not None and not {"password", "is_active"} & set(fields)):
        return  # a new user has no sockets; a login's last_login changes no right
    event = {
        "user": str(instance.pk),
        "active": bool(getattr(instance, "is_active", True)),
        "auth": digest(auth_hash(instance)),
    }
    publish_on_commit(event, using)


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def _user_deleted(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    # pre_delete: sent before the cascade's post_delete of the memberships, so this event
    # goes first and the sockets hear 4401 (signed out) rather than 4403.
    publish_on_commit({"user": str(instance.pk), "active": False}, using)


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and session_key:
        access_publish({"user": str(user.pk), "session": digest(session_key)})


# The periodic re-check -------------------------------------------------------------------


def grants_check(*, grants: list[tuple[int, Grant]]) -> list[tuple[int, Refusal]]:
    """The sockets among ``grants`` (``(token, grant)`` pairs) that lost their rights, with
    why: the user is gone or inactive, their auth hash changed, the socket's session ended,
    or the membership is gone; for a visitor, it logged in or was deleted, or the room is no
    longer its own. Four queries for the batch (plus one per session with a session engine
    that is not database-backed)."""
    visitors = [(token, grant) for token, grant in grants if grant.visitor is not None]
    grants = [(token, grant) for token, grant in grants if grant.visitor is None]
    revoked = _visitor_grants_check(visitors) if visitors else []
    if not grants:
        return revoked
    user_ids = {grant.user_id for _, grant in grants}
    users = {user.pk: user for user in get_user_model()._default_manager.filter(pk__in=user_ids)}
    members = selectors.memberships_find(
        user_ids=user_ids, room_ids={grant.room_id for _, grant in grants}
    )
    sessions = sessions_users({g.session_key for _, g in grants if g.session_key is not None})
    for token, grant in grants:
        user = users.get(grant.user_id)
        if (
            user is None
            or not getattr(user, "is_active", True)
            or not constant_time_compare(auth_hash(user), grant.auth_hash)
            or (grant.session_key is not None and sessions.get(grant.session_key) != grant.user_key)
        ):
            revoked.append((token, SIGNED_OUT))
        elif grant.room_id != NO_ROOM and (grant.user_id, grant.room_id) not in members:
            revoked.append((token, NOT_A_MEMBER))
    return revoked


def _visitor_grants_check(grants: list[tuple[int, Grant]]) -> list[tuple[int, Refusal]]:
    if not get_config().visitors["ENABLED"]:  # turned off: their sockets end too
        return [(token, SIGNED_OUT) for token, _ in grants]
    live = set(
        Room.objects.filter(
            pk__in={grant.room_id for _, grant in grants},
            visitor__public_id__in={grant.visitor for _, grant in grants},
            visitor__user__isnull=True,
        ).values_list("pk", "visitor__public_id")
    )
    return [(token, SIGNED_OUT) for token, g in grants if (g.room_id, g.visitor) not in live]


def sessions_users(keys: set[str]) -> dict[str, str]:
    """The user id (as the session stores it) of each of the session keys that is still a
    live session; keys of ended sessions are missing."""
    if not keys:
        return {}
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if hasattr(store_class, "get_model_class"):  # the db and cached_db engines: one query
        store = store_class()
        rows = store_class.get_model_class().objects.filter(
            session_key__in=keys, expire_date__gt=timezone.now()
        )
        found = {row.session_key: store.decode(row.session_data).get(SESSION_KEY) for row in rows}
    else:
        found = {key: store_class(key).get(SESSION_KEY) for key in keys}
    return {key: user for key, user in found.items() if user is not None}


async def access_recheck() -> int:
    """Re-check every socket of this process's hub and revoke those that lost their rights;
    returns how many were revoked."""
    hub = hubs.get_hub()
    grants = [(token, m.grant) for token, m in hub.members.items() if m.grant is not None]
    revoked = 0
    for start in range(0, len(grants), CHECK_BATCH):
        batch = grants[start : start + CHECK_BATCH]
        for token, refusal in await database_call(grants_check, grants=batch):
            member = hub.members.get(token)
            if member is not None:
                member.revoke(*refusal)
                revoked += 1
    if revoked:
        logger.info("re-check: %d socket(s) had lost their rights and were closed", revoked)
    return revoked


async def access_watch() -> None:
    """Every ``RECHECK_INTERVAL`` seconds, :func:`access_recheck`. Runs for as long as the
    server does (see :mod:`parley.lifespan`); returns at once if the interval is ``None``."""
    while (interval := get_config().recheck_interval) is not None:
        await asyncio.sleep(interval)
        try:
            await access_recheck()
        except Exception:  # the database is away: next round
            logger.exception("could not re-check the rights of open sockets")
