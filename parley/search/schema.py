"""The full-text index of messages, per database: what migration 0014 creates and
:func:`search_schema_ensure` restores (docs/operations.md, "Search").

PostgreSQL: a GIN index on the expression ``to_tsvector(SEARCH_CONFIG, text)``, rather than
a generated column: nothing stored twice in each row, and the index is partial, leaving out
streaming answers, whose text is written again every second (``STREAM_PERSIST_INTERVAL``)
and whose ``tsvector`` a generated column would compute again on each write.

SQLite: an FTS5 table over ``parley_message`` (external content: the text is not stored
twice) kept in step by triggers, also leaving out streaming answers.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "parley_message_search"  # the index's name on PostgreSQL, the FTS5 table's on SQLite

_NOT_STREAMING = "status <> 'streaming'"

TRIGGERS = {
    "insert": f"AFTER INSERT ON parley_message WHEN new.{_NOT_STREAMING} BEGIN"
    f" INSERT INTO {TABLE} (rowid, text) VALUES (new.id, new.text); END",
    # An external-content FTS5 table forgets a row by being told its old text.
    "delete": f"AFTER DELETE ON parley_message WHEN old.{_NOT_STREAMING} BEGIN"
    f" INSERT INTO {TABLE} ({TABLE}, rowid, text) VALUES ('delete', old.id, old.text); END",
    # The ORM's save() writes every column: only a new text, or an answer that ends or
    # starts streaming again, touches the index.
    "update": "AFTER UPDATE OF text, status ON parley_message"
    " WHEN old.text IS NOT new.text"
    " OR (old.status = 'streaming') IS NOT (new.status = 'streaming') BEGIN"
    f" INSERT INTO {TABLE} ({TABLE}, rowid, text)"
    f" SELECT 'delete', old.id, old.text WHERE old.{_NOT_STREAMING};"
    f" INSERT INTO {TABLE} (rowid, text) SELECT new.id, new.text WHERE new.{_NOT_STREAMING};"
    " END",
}


def regconfig(config: str) -> str:
    """PostgreSQL's text search configuration ``config``, as a literal: the index and every
    search spell it the same, so that the planner uses the index (a parameter would not)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_.]*", config):
        raise ValueError(f"PARLEY['SEARCH_CONFIG'] {config!r} is not a configuration's name.")
    return f"'{config}'::regconfig"


# What PostgreSQL's parser joins words with into tokens of their own (tags, e-mail addresses,
# URLs, paths, hyphenated words, numbers), read as spaces: "<script>" would be no word at
# all, and "user@example.com" not "example". Then PostgreSQL splits text into words as FTS5
# does and as parley/search/text.py reads a search. No "%" (it would need escaping where the
# statement has parameters), no quote: both are separators to the parser already.
_GLUE = "<>&@./:-+~_\\"


def tsvector(config: str, column: str = "text") -> str:
    """The indexed expression (see :func:`regconfig`)."""
    spaces = " " * len(_GLUE)
    return f"to_tsvector({regconfig(config)}, translate({column}, '{_GLUE}', '{spaces}'))"


def search_schema_create(connection: BaseDatabaseWrapper, *, config: str) -> None:
    """Create the index of ``connection``'s database and index the messages there are
    (nothing on databases other than PostgreSQL and SQLite)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                # IF NOT EXISTS: one built by hand CONCURRENTLY first (docs/operations.md).
                f"CREATE INDEX IF NOT EXISTS {TABLE} ON parley_message"
                f" USING gin ({tsvector(config)}) WHERE {_NOT_STREAMING}"
            )
        elif connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE VIRTUAL TABLE {TABLE} USING fts5"
                "(text, content='parley_message', content_rowid='id')"
            )
            for name, body in TRIGGERS.items():
                cursor.execute(f"CREATE TRIGGER {TABLE}_{name} {body}")
            cursor.execute(
                f"INSERT INTO {TABLE} (rowid, text)"
                f" SELECT id, text FROM parley_message WHERE {_NOT_STREAMING}"
            )


def search_schema_drop(connection: BaseDatabaseWrapper) -> None:
    """Drop what :func:`search_schema_create` made."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP INDEX IF EXISTS {TABLE}")
        elif connection.vendor == "sqlite":
            for name in TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{name}")
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


def search_schema_ensure(*, using: str, **kwargs: Any) -> None:
    """Put back SQLite's triggers, after ``migrate``, where a migration dropped them: SQLite
    alters a table by making it again (``_remake_table``), which drops its triggers, and the
    index would silently fall behind. The rows it copies keep their ids and texts, so what
    is indexed stays true. Connected to ``post_migrate``."""
    connection = connections[using]
    if connection.vendor != "sqlite" or TABLE not in connection.introspection.table_names():
        return
    with connection.cursor() as cursor:
        for name, body in TRIGGERS.items():
            cursor.execute(f"CREATE TRIGGER IF NOT EXISTS {TABLE}_{name} {body}")
