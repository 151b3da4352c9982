"""Visitors who are not logged in: finding them again, their conversation, their limits, and
what becomes of them when they log in or stay away (``PARLEY["VISITORS"]``).

A visitor talks to the assistant in one private conversation of their own, never in anyone
else's: nothing here creates rooms for them but that one, and nothing takes a room id or a
username from them. They are found again by

- the Django session, for the site's own pages (``request.session[SESSION_VISITOR]``);
- a signed token the embed keeps on another origin, where the site's cookies are not sent
  (:func:`visitor_token`);
- an identity a host site signed with ``VISITORS["IDENTITY_KEY"]`` (an HMAC-SHA256 of its
  own id for the person, as Chatwoot's identity validation), which finds the same
  conversation on every device.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.core import signing
from django.db import IntegrityError, models, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from ..conf import get_config
from ..exceptions import QuotaExceeded
from ..feedback.services import feedback_carry_over
from ..models import Membership, Message, Room, Visitor
from ..realtime.access import visitor_revoke_on_commit
from ..throttling import page_limit_take

if TYPE_CHECKING:
    from django.contrib.auth.models import _User

IDENTITY_MAX = Visitor._meta.get_field("identity").max_length or 150
SIGNATURE = re.compile(r"[0-9a-f]{64}")  # hex SHA-256
# Where the site's own session keeps its visitor's public id.
SESSION_VISITOR = "_parley_visitor"
TOKEN_SALT = "parley.visitor"
CONVERSATION_TITLE = "Conversation with the assistant"


class IdentityRefused(Exception):
    """A signed identity whose signature does not match (or no key to check it with)."""


def visitors_enabled() -> bool:
    return bool(get_config().visitors["ENABLED"])


def visitor_token(visitor: Visitor) -> str:
    """What an embed on another origin keeps to be found again: the visitor's public id,
    signed (it expires with the conversation, ``VISITORS["EXPIRE_AFTER"]``)."""
    return signing.dumps(visitor.public_id, salt=TOKEN_SALT)


def identity_signature(identity: str) -> str:
    """The HMAC-SHA256 (hex) a host site puts beside ``identity`` to vouch for it."""
    key = get_config().visitors["IDENTITY_KEY"]
    if not key:
        raise IdentityRefused("VISITORS['IDENTITY_KEY'] is not set: no identity is accepted.")
    return hmac.new(str(key).encode(), identity.encode(), hashlib.sha256).hexdigest()


def _identity_checked(identity: str, signature: str) -> str:
    if len(identity) > IDENTITY_MAX:
        raise IdentityRefused(f"An identity has at most {IDENTITY_MAX} characters.")
    signature = signature.strip().lower()
    if not SIGNATURE.fullmatch(signature) or not hmac.compare_digest(
        identity_signature(identity), signature
    ):
        raise IdentityRefused("The identity's signature does not match.")
    return identity


def visitor_find(
    *, session_id: str | None = None, token: str | None = None, identity: str | None = None,
    signature: str = "",
) -> Visitor | None:  # fmt: skip
    """The live visitor named by a signed identity (which raises :class:`IdentityRefused`
    if forged), else by an embed's token, else by the public id a session keeps; ``None``
    if there is none (expired, deleted, or carried over to an account)."""
    live = Visitor.objects.filter(user__isnull=True)
    if identity:
        return live.filter(identity=_identity_checked(identity, signature)).first()
    if token:
        max_age = get_config().visitors["EXPIRE_AFTER"]
        try:
            public_id = signing.loads(token, salt=TOKEN_SALT, max_age=max_age)
        except signing.BadSignature:
            return None
        return live.filter(public_id=public_id, identity="").first()
    if session_id:  # never an identified visitor: the next person at that browser is not it
        return live.filter(public_id=session_id, identity="").first()
    return None


def visitor_create(*, address: str, identity: str = "", signature: str = "") -> Visitor:
    """A new visitor, counted against ``RATE_LIMITS["NEW_VISITORS"]`` of its client
    ``address`` (:class:`RateLimited`): a client making a new visitor for every message
    would otherwise escape every per-visitor limit. A visitor of the same ``identity`` made
    meanwhile (two widgets asking at once) is returned instead."""
    if identity:
        _identity_checked(identity, signature)
    page_limit_take(action="NEW_VISITORS", key=address)
    try:
        with transaction.atomic():
            return Visitor.objects.create(identity=identity)
    except IntegrityError:
        if not identity:
            raise
        return Visitor.objects.get(identity=identity, user__isnull=True)


def conversation_for_visitor(*, visitor: Visitor) -> Room:
    """The visitor's conversation (one: a unique constraint), started if it has none."""
    fields = {"title": CONVERSATION_TITLE, "kind": Room.Kind.PRIVATE, "widget": True}
    room, _ = Room.objects.get_or_create(visitor=visitor, defaults=fields)
    return room


def conversation_for_user(*, user: _User) -> Room:
    """The logged-in user's conversation of the embedded chat: the one with the latest
    message (a visitor's just carried over, after a login), started (as a private room of
    theirs) if they have none."""
    latest = (
        Room.objects.filter(owner=user, widget=True, kind=Room.Kind.PRIVATE)
        .annotate(active=Max("messages__created_at"))
        .order_by(F("active").desc(nulls_last=True), "-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    if latest is not None:
        return Room.objects.get(pk=latest)
    with transaction.atomic():
        room = Room.objects.create(
            owner=user, title=CONVERSATION_TITLE, kind=Room.Kind.PRIVATE, widget=True
        )
        Membership.objects.create(room=room, user=user)
    return room


def visitor_carry_over(*, visitor: Visitor, user: _User) -> list[Room]:
    """Give ``user`` the conversation of ``visitor``, who has just logged in as them: it
    becomes a private room of theirs, its messages theirs. The visitor is done (its open
    sockets are closed: the embed reconnects as the user)."""
    with transaction.atomic():
        rooms = list(Room.objects.select_for_update().filter(visitor=visitor))
        for room in rooms:
            Message.objects.filter(room=room, role=Message.Role.USER, author__isnull=True).update(
                author=user
            )
            Membership.objects.get_or_create(room=room, user=user)
        Room.objects.filter(pk__in=[room.pk for room in rooms]).update(owner=user, visitor=None)
        feedback_carry_over(visitor=visitor, user=user)
        visitor.user = user
        visitor.identity = ""  # free for a visitor of its own, if the host signs it again
        visitor.save(update_fields=["user", "identity"])
        visitor_revoke_on_commit(visitor.public_id)
    return rooms


def visitor_quota_take(*, visitor: str, client_id: str = "", now: datetime | None = None) -> None:
    """Count one message (or one answer asked for again) against the visitor's
    ``VISITORS["DAILY_MESSAGES"]``; raises
    :class:`QuotaExceeded` when today's (UTC) are spent, unless ``client_id`` names one
    stored already (a resend: it gets its acknowledgement again). Marks the visitor as
    seen. Counted before the message is stored: sends racing from several sockets may pass
    the quota by a few, as many as ``RATE_LIMITS["VISITOR"]`` lets through at once."""
    now = now or timezone.now()
    limit = get_config().visitors["DAILY_MESSAGES"]
    conversation = Message.objects.filter(room__visitor__public_id=visitor)
    mine = conversation.filter(role=Message.Role.USER)
    if limit is not None and not (client_id and mine.filter(client_id=client_id).exists()):
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        # Its messages, and the answers it asked for again (regenerated).
        asked = conversation.filter(Q(role=Message.Role.USER) | Q(version_of__isnull=False))
        if asked.filter(created_at__gte=midnight).count() >= limit:
            raise QuotaExceeded(
                f"You have sent the {limit} messages a visitor may send in a day. "
                "Log in, or come back tomorrow.",
                renews_at=midnight + timedelta(days=1),
            )
    Visitor.objects.filter(public_id=visitor).update(last_seen_at=now)


def visitors_stale(*, now: datetime | None = None) -> models.QuerySet[Visitor]:
    """The visitors :func:`visitors_expire` deletes at ``now``."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=get_config().visitors["EXPIRE_AFTER"])
    return Visitor.objects.filter(Q(last_seen_at__lt=cutoff) | Q(user__isnull=False))


def visitors_expire(*, now: datetime | None = None) -> int:
    """Delete the visitors (and their conversations) not seen for ``VISITORS["EXPIRE_AFTER"]``
    seconds, and those carried over to an account; returns how many."""
    stale = visitors_stale(now=now)
    with transaction.atomic():
        gone = list(stale.filter(user__isnull=True).values_list("public_id", flat=True))
        # Their open sockets close now, not at the next re-check: told first that the
        # visitor is gone (4401), before their deleted conversation says so (4404).
        for public_id in gone:
            visitor_revoke_on_commit(public_id)
        _, deleted = stale.delete()
    return deleted.get(Visitor._meta.label, 0)
