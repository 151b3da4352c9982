"""Retention: deleting the messages older than ``RETENTION`` allows for their room's kind,
and the rooms left with nothing (docs/operations.md, "Retention and erasure").

What goes is decided per *exchange*: a question with its edits and every answer to any of
them, with the answers' regenerations (messages joined by ``reply_to`` and ``version_of``).
An exchange is deleted whole, and only when all of it is past retention and none of it is
waiting in the queue or streaming: so a recent edit never loses its older versions
(``version_of`` cascades from the first), a recent answer keeps its question (asking again
and tool approvals read it), and the queue and a running answer are never touched.

Rooms keep their numbering: ``Room.last_seq`` stays, new messages go on from it, and a
resume after pruned numbers gets what is left (a history page covers the numbers up to its
last message, so clients see no gap to fill).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..conf import get_config
from ..models import Message, Room

logger = logging.getLogger(__name__)

KINDS = ("PRIVATE", "SHARED", "VISITOR")
ROOM_PAGE = 500  # rooms' primary keys read per query


@dataclass
class KindReport:
    """What a run did (or, dry, would do) to the rooms of one kind."""

    kind: str
    days: float
    rooms: int = 0  # rooms old enough to look at
    messages: int = 0
    rooms_deleted: int = 0


@dataclass
class RoomPlan:
    """What pruning one room deletes: message ids in batches of whole exchanges, and
    whether the room is left with nothing (then it goes too)."""

    room_id: int
    batches: list[list[int]] = field(default_factory=list)
    empty: bool = False

    @property
    def messages(self) -> int:
        return sum(len(batch) for batch in self.batches)


def retention_cutoffs(*, now: datetime | None = None) -> list[tuple[str, float, datetime]]:
    """``(kind, days, cutoff)`` for each room kind with a retention: messages created
    before ``cutoff`` are past it."""
    now = now or timezone.now()
    settings = get_config().retention
    return [
        (kind, float(settings[kind]), now - timedelta(days=settings[kind]))
        for kind in KINDS
        if settings[kind] is not None
    ]


def rooms_of_kind(*, kind: str) -> models.QuerySet[Room]:
    """The rooms ``RETENTION[kind]`` applies to: a visitor's conversation (``VISITOR``), a
    member's private room, a shared room."""
    if kind == "VISITOR":
        return Room.objects.filter(visitor__isnull=False)
    if kind == "PRIVATE":
        return Room.objects.filter(visitor__isnull=True, kind=Room.Kind.PRIVATE)
    return Room.objects.filter(kind=Room.Kind.SHARED)


def retention_rooms(*, kind: str, cutoff: datetime) -> models.QuerySet[Room]:
    """The rooms of ``kind`` that may hold messages past ``cutoff``: those made before it."""
    return rooms_of_kind(kind=kind).filter(created_at__lt=cutoff)


def _room_ids(rooms: models.QuerySet[Room]) -> Iterator[int]:
    """The primary keys of ``rooms``, a page at a time (no cursor held across the writes)."""
    after = 0
    while page := list(
        rooms.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:ROOM_PAGE]
    ):
        yield from page
        after = page[-1]


def room_prune_plan(*, room_id: int, cutoff: datetime, batch_size: int) -> RoomPlan:
    """What pruning the room deletes at ``cutoff``, in batches of at most ``batch_size``
    messages (an exchange larger than that is a batch of its own). Three queries; holds the
    room's expired messages' ids and links in memory (a few hundred bytes each)."""
    old = Message.objects.filter(room_id=room_id, created_at__lt=cutoff).order_by("seq")
    rows = list(old.values_list("pk", "reply_to_id", "version_of_id", "waiting", "status"))
    ids = {row[0] for row in rows}
    links: dict[int, list[int]] = defaultdict(list)
    live: set[int] = set()
    for pk, reply_to, version_of, waiting, status in rows:
        for other in (reply_to, version_of):
            if other in ids:
                links[pk].append(other)
                links[other].append(pk)
        if waiting or status == Message.Status.STREAMING:
            live.add(pk)
    # Expired messages that recent ones refer to: a recent answer's question, the first
    # version of a recent edit or regeneration.
    recent = Message.objects.filter(room_id=room_id, created_at__gte=cutoff)
    refers = recent.filter(
        Q(reply_to__created_at__lt=cutoff) | Q(version_of__created_at__lt=cutoff)
    )
    for pair in refers.values_list("reply_to_id", "version_of_id"):
        live.update(pk for pk in pair if pk in ids)

    plan = RoomPlan(room_id=room_id)
    seen: set[int] = set()
    batch: list[int] = []
    for pk, *_ in rows:
        if pk in seen:
            continue
        exchange = _exchange(pk, links, seen)
        if live.intersection(exchange):
            continue
        if batch and len(batch) + len(exchange) > batch_size:
            plan.batches.append(batch)
            batch = []
        batch.extend(exchange)
    if batch:
        plan.batches.append(batch)
    plan.empty = plan.messages == len(rows) and not recent.exists()
    return plan


def _exchange(start: int, links: dict[int, list[int]], seen: set[int]) -> list[int]:
    """The messages linked to ``start`` by replies and versions, marked ``seen``."""
    found, stack = [], [start]
    seen.add(start)
    while stack:
        pk = stack.pop()
        found.append(pk)
        for other in links.get(pk, ()):
            if other not in seen:
                seen.add(other)
                stack.append(other)
    return found


def room_prune(*, plan: RoomPlan, cutoff: datetime, pause: float = 0.0) -> tuple[int, bool]:
    """Carry out ``plan``: each batch in a transaction of its own, so that no run holds the
    room's rows for long, and ``pause`` seconds after each; then the room, if nothing is
    left in it (its open sockets close with 4404: parley/realtime/access.py). Returns the
    messages deleted and whether the room went.

    The pause is for SQLite, whose writers take turns at one lock: without it a writer
    waiting there, polling, would rarely find it free between two batches
    (bench/retention.py: a member's post waited 2.5 s, 0.2 s with 50 ms pauses).

    Each batch is checked again as it is deleted: a message answered, edited or asked again
    since the plan was made stays.
    """
    deleted = 0
    for batch in plan.batches:
        with transaction.atomic():
            # Correlated, so that each is a look-up in the index of version_of or reply_to,
            # not a scan of every recent message.
            recent = Message.objects.filter(created_at__gte=cutoff)
            doomed = (
                Message.objects.filter(pk__in=batch, created_at__lt=cutoff, waiting=False)
                .exclude(status=Message.Status.STREAMING)
                .exclude(Exists(recent.filter(version_of=OuterRef("pk"))))
                .exclude(Exists(recent.filter(reply_to=OuterRef("pk"))))
            )
            _, counts = doomed.delete()
        deleted += counts.get(Message._meta.label, 0)
        if pause:
            time.sleep(pause)
    return deleted, plan.empty and _room_delete_if_empty(room_id=plan.room_id)


def _room_delete_if_empty(*, room_id: int) -> bool:
    with transaction.atomic():
        # Locked, as posting a message locks it to take a number: none can arrive meanwhile.
        room = Room.objects.select_for_update().filter(pk=room_id).first()
        if room is None or Message.objects.filter(room_id=room_id).exists():
            return False
        room.delete()
    return True


def retention_apply(
    *,
    kind: str,
    cutoff: datetime,
    days: float,
    batch_size: int | None = None,
    pause: float | None = None,
    dry_run: bool = False,
    on_room: Callable[[], object] | None = None,
) -> KindReport:
    """Prune every room of ``kind`` at ``cutoff`` (:func:`room_prune`; ``batch_size`` and
    ``pause`` default to ``RETENTION``'s), or with ``dry_run`` only count what would go;
    ``on_room`` is called after each room."""
    settings = get_config().retention
    batch_size = batch_size or settings["BATCH_SIZE"]
    pause = settings["PAUSE"] if pause is None else pause
    report = KindReport(kind=kind, days=days)
    for room_id in _room_ids(retention_rooms(kind=kind, cutoff=cutoff)):
        plan = room_prune_plan(room_id=room_id, cutoff=cutoff, batch_size=batch_size)
        report.rooms += 1
        if dry_run:
            report.messages += plan.messages
            report.rooms_deleted += plan.empty
        elif plan.batches or plan.empty:
            messages, room_deleted = room_prune(plan=plan, cutoff=cutoff, pause=pause)
            report.messages += messages
            report.rooms_deleted += room_deleted
            if room_deleted:
                logger.info("retention: room %d deleted, nothing was left in it", room_id)
        if on_room is not None:
            on_room()
    logger.info(
        "retention%s: %s rooms, %d message(s) older than %g days %s, %d room(s) %s",
        " (dry run)" if dry_run else "",
        kind.lower(),
        report.messages,
        days,
        "would be deleted" if dry_run else "deleted",
        report.rooms_deleted,
        "would be deleted" if dry_run else "deleted",
    )
    return report
