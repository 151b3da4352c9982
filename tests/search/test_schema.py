"""The index the migration made, and what keeps it true."""

from __future__ import annotations

import pytest
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection

from parley.rooms import services
from parley.search.schema import TABLE, TRIGGERS, regconfig
from parley.search.selectors import messages_search

pytestmark = pytest.mark.django_db


def test_sqlites_triggers_come_back_after_migrate_if_a_migration_dropped_them(alice, private_room):
    """SQLite alters a table by making it again, which drops its triggers."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's triggers; PostgreSQL's index has none")
    with connection.cursor() as cursor:
        for name in TRIGGERS:
            cursor.execute(f"DROP TRIGGER {TABLE}_{name}")
    emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
    services.message_post(room=private_room, author=alice, text="after the remake")
    assert [hit.message.text for hit in messages_search(user=alice, query="remake").hits] == [
        "after the remake"
    ]


def test_the_index_is_built_with_the_configuration_named():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's configuration")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [TABLE])
        (definition,) = cursor.fetchone()
    assert f"to_tsvector({regconfig('simple')}, translate(text," in definition


@pytest.mark.parametrize("config", ["english'; DROP TABLE x; --", "Simple", ""])
def test_a_configuration_that_is_not_a_name_is_refused(config):
    with pytest.raises(ValueError, match="SEARCH_CONFIG"):
        regconfig(config)
