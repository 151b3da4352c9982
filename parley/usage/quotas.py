"""Quotas: how many answers (or tokens) the assistant gives someone per day or month.

A question asked takes one answer from each quota that applies to its asker before it is
stored, by a conditional ``UPDATE`` of the asker's tally for the period, so that server
processes asking at once cannot both take the last one; a question that then gets no
answer (a resend, a full queue, withdrawn) gives it back. Tokens are added to the tallies
as answers record their usage (parley/usage/metering.py): an answer starts while any are
left, so the last one may pass a token limit. Periods follow the site's ``TIME_ZONE``.

A site without quotas pays nothing for them: whether any exist is read at most every
``IN_FORCE_TTL`` seconds per process (and at once in the process that saves one).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F, Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import formats, timezone

from ..exceptions import QuotaExceeded
from ..models import Quota, QuotaTally

if TYPE_CHECKING:
    from django.contrib.auth.models import _User


# Seconds a process trusts what it read of whether any quota exists: a quota made in the
# admin applies in other processes within this.
IN_FORCE_TTL = 2.0

_in_force: tuple[float, bool] | None = None  # (when read, whether any exists)


def quotas_known() -> bool | None:
    """Whether any quota exists, as read less than ``IN_FORCE_TTL`` seconds ago; ``None``
    when that is not known (then :func:`quotas_in_force` reads it)."""
    if _in_force is None or time.monotonic() - _in_force[0] > IN_FORCE_TTL:
        return None
    return _in_force[1]


def quotas_in_force() -> bool:
    """Whether any quota exists (read from the database unless :func:`quotas_known`)."""
    global _in_force
    known = quotas_known()
    if known is None:
        known = Quota.objects.exists()
        _in_force = (time.monotonic(), known)
    return known


@receiver([post_save, post_delete], sender=Quota)
def _quotas_changed(**kwargs: Any) -> None:
    global _in_force
    _in_force = None


def quota_subject(*, user_id: int | None, visitor_id: int | None) -> str | None:
    """Whose tally a question counts in: its author's, or the visitor's whose conversation
    it is; ``None`` for neither (an author since deleted)."""
    if user_id is not None:
        return f"user:{user_id}"
    if visitor_id is not None:
        return f"visitor:{visitor_id}"
    return None


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The start of the day or month ``now`` is in, in the site's time zone, and the next."""
    local = timezone.localtime(now)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Quota.Period.MONTH:
        start = start.replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
    else:
        following = start + timedelta(days=1)
    # Midnight again after a change of the clocks: the wall time, in the zone it is in.
    return start, timezone.make_aware(following.replace(tzinfo=None), start.tzinfo)


def quotas_for(user: _User | None) -> list[Quota]:
    """The quotas that apply to ``user`` (``None``: a visitor): their own if they have any,
    else their groups', else everyone's. Read in one query."""
    if user is None or not user.is_authenticated:
        return list(Quota.objects.filter(user__isnull=True, group__isnull=True))
    groups = list(user.groups.values_list("pk", flat=True)) if hasattr(user, "groups") else []
    rows = list(
        Quota.objects.filter(
            Q(user=user) | Q(group__in=groups) | Q(user__isnull=True, group__isnull=True)
        )
    )
    own = [quota for quota in rows if quota.user_id is not None]
    of_groups = [quota for quota in rows if quota.group_id is not None]
    return own or of_groups or [quota for quota in rows if quota.group_id is None]


def _refusal(quota: Quota, tally: QuotaTally, renews_at: datetime) -> QuotaExceeded:
    when = formats.date_format(timezone.localtime(renews_at), "DATETIME_FORMAT")
    if quota.max_answers is not None and tally.answers >= quota.max_answers:
        spent = f"the {quota.max_answers} answers"
    else:
        spent = f"the {quota.max_tokens} tokens"
    return QuotaExceeded(
        f"You have had {spent} the assistant gives you per {quota.period}; "
        f"it answers again from {when}.",
        renews_at=renews_at,
    )


def quota_take(*, user: _User | None, visitor_id: int | None, now: datetime | None = None) -> None:
    """Take one answer from every limited quota that applies to the asker (``user``, or the
    visitor ``visitor_id``); raises :class:`QuotaExceeded`, taking nothing, if one is spent,
    with the time it renews."""
    subject = quota_subject(user_id=user.pk if user else None, visitor_id=visitor_id)
    limited = [
        quota
        for quota in quotas_for(user)
        if quota.max_answers is not None or quota.max_tokens is not None
    ]
    if subject is None or not limited:
        return
    now = now or timezone.now()
    with transaction.atomic():
        for quota in limited:
            start, renews_at = period_bounds(quota.period, now)
            tally, _ = QuotaTally.objects.get_or_create(
                quota=quota, subject=subject, period_start=start
            )
            left = Q(pk=tally.pk)
            if quota.max_answers is not None:
                left &= Q(answers__lt=quota.max_answers)
            if quota.max_tokens is not None:
                left &= Q(tokens__lt=quota.max_tokens)
            if not QuotaTally.objects.filter(left).update(answers=F("answers") + 1):
                tally.refresh_from_db()
                raise _refusal(quota, tally, renews_at)


def _this_period(subject: str, now: datetime) -> Q:
    days = period_bounds(Quota.Period.DAY, now)[0]
    months = period_bounds(Quota.Period.MONTH, now)[0]
    return Q(subject=subject) & (
        Q(quota__period=Quota.Period.DAY, period_start=days)
        | Q(quota__period=Quota.Period.MONTH, period_start=months)
    )


def quota_return(
    *, user_id: int | None, visitor_id: int | None, now: datetime | None = None
) -> None:
    """Give back the answer a question took that will not be answered (this period's)."""
    subject = quota_subject(user_id=user_id, visitor_id=visitor_id)
    if subject is not None and quotas_in_force():
        tallies = QuotaTally.objects.filter(_this_period(subject, now or timezone.now()))
        tallies.filter(answers__gt=0).update(answers=F("answers") - 1)


def quotas_add_tokens(*, subject: str, tokens: int, now: datetime | None = None) -> None:
    """Count ``tokens`` an answer used in this period's tallies of ``subject``."""
    if tokens and quotas_in_force():
        tallies = QuotaTally.objects.filter(_this_period(subject, now or timezone.now()))
        tallies.update(tokens=F("tokens") + tokens)
