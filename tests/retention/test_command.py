"""``manage.py parley_retention`` on a database of realistic size: it deletes exactly what
the policy says, in transactions of bounded size, says what it did, and a dry run deletes
nothing."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from parley.models import Membership, Message, Room, Visitor
from tests.retention.conftest import exchanges

pytestmark = pytest.mark.django_db

ROOMS_PER_KIND = 100
EXCHANGES = 40  # per room: 80 messages, 24,000 in all
RETENTION = {"PRIVATE": 30, "SHARED": 90, "VISITOR": 7, "PAUSE": 0}


def populate(rooms_per_kind: int, per_room: int) -> dict[str, list[Room]]:
    """Rooms of each kind, ``per_room`` exchanges in each, of four ages: 100, 60, 10 and 1
    days (a quarter each), so that each kind's retention cuts elsewhere; and, per kind, a
    tenth of the rooms with only old messages."""
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"user{i}") for i in range(20)
    )
    visitors = Visitor.objects.bulk_create(Visitor() for _ in range(rooms_per_kind))
    rooms = {
        "PRIVATE": [Room(owner=users[i % 20], title=f"p{i}") for i in range(rooms_per_kind)],
        "SHARED": [
            Room(owner=users[i % 20], title=f"s{i}", kind="shared") for i in range(rooms_per_kind)
        ],
        "VISITOR": [Room(visitor=visitor, title="v") for visitor in visitors],
    }
    for kind in rooms:
        rooms[kind] = Room.objects.bulk_create(rooms[kind])
    Membership.objects.bulk_create(
        Membership(room=room, user_id=room.owner_id) for room in rooms["PRIVATE"] + rooms["SHARED"]
    )
    for kind, made in rooms.items():
        for index, room in enumerate(made):
            author = None if kind == "VISITOR" else room.owner
            ages = (100,) if index % 10 == 0 else (100, 60, 10, 1)
            for days in ages:
                exchanges(room, per_room // len(ages), author=author, days=days)
    return rooms


def past(kind: str, rooms: list[Room]) -> int:
    cutoff = timezone.now() - timedelta(days=RETENTION[kind])
    return Message.objects.filter(room__in=rooms, created_at__lt=cutoff).count()


def run(*args: str) -> str:
    out = StringIO()
    call_command("parley_retention", "--no-progress", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_realistic_database_loses_exactly_what_is_past_retention(settings):
    settings.PARLEY = {"RETENTION": RETENTION}
    rooms = populate(ROOMS_PER_KIND, EXCHANGES)
    total = Message.objects.count()
    assert total >= 20_000
    expected = {kind: past(kind, made) for kind, made in rooms.items()}
    emptied = ROOMS_PER_KIND // 10  # per kind: only 100-day-old messages

    dry = run("--dry-run")
    assert Message.objects.count() == total and Room.objects.count() == 3 * ROOMS_PER_KIND
    assert f"Dry run: {sum(expected.values())} message(s) and {3 * emptied} room(s)" in dry

    out = run()
    assert Message.objects.count() == total - sum(expected.values())
    for kind, made in rooms.items():
        assert past(kind, made) == 0
        left = Room.objects.filter(pk__in=[room.pk for room in made]).count()
        assert left == ROOMS_PER_KIND - emptied
        assert f"{kind.lower()} rooms (kept {RETENTION[kind]} days): {expected[kind]} " in out
    # What is left is every message younger than its kind's retention.
    assert Message.objects.filter(created_at__gte=timezone.now() - timedelta(days=5)).count() == (
        3 * (ROOMS_PER_KIND - emptied) * EXCHANGES // 4 * 2
    )
    assert run().splitlines()[-1].startswith("0 message(s) and 0 room(s) deleted")


def deleted_per_transaction(queries: list[dict]) -> list[int]:
    """The message ids each transaction deleted (the test's own transaction around them makes
    each of the command's a savepoint)."""
    sizes: list[int] = []
    table = Message._meta.db_table
    for query in queries:
        sql = query["sql"]
        if sql.startswith("SAVEPOINT"):
            sizes.append(0)
        elif sql.startswith("DELETE") and f"FROM {connection.ops.quote_name(table)}" in sql:
            ids = re.search(r"IN \(([^)]*)\)", sql)
            assert ids is not None
            sizes[-1] += len(ids.group(1).split(","))
    return [size for size in sizes if size]


@pytest.mark.parametrize("batch_size", [50, 200])
def test_each_transaction_deletes_at_most_a_batch(settings, batch_size):
    settings.PARLEY = {"RETENTION": {"PRIVATE": 30}}
    rooms = populate(4, 200)["PRIVATE"]  # 400 messages a room, most of them old
    expected = past("PRIVATE", rooms)
    per_room = [past("PRIVATE", [room]) for room in rooms]
    with CaptureQueriesContext(connection) as captured:
        run("--batch-size", str(batch_size), "--pause", "0")
    sizes = deleted_per_transaction(captured.captured_queries)
    assert sum(sizes) == expected
    assert max(sizes) <= batch_size
    # Whole exchanges of two fill each batch: as few transactions as the batch allows.
    assert len(sizes) == sum(-(-count // batch_size) for count in per_room)
