"""The search itself, one statement per database: the only place it asks which database it
runs on. Each gives the ids of the best hits, best first, among the messages the page shows
of the rooms the user is a member of: the membership is part of the statement (a join, or
on SQLite an ``IN``), before the ranking and the limit, never a filter of its results.

- PostgreSQL: the GIN index of parley/search/schema.py finds the messages holding every
  word; ``websearch_to_tsquery`` checks the phrases and ``ts_rank`` ranks the newest.
- SQLite: FTS5's ``MATCH`` on its table, the newest ranked by ``bm25()``.
- Any other database: every word a case-blind ``LIKE`` on the text, newest first, with no
  index (a table scan of the user's rooms' messages): correct, slower, unranked.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from ..conf import get_config
from .schema import TABLE, regconfig, tsvector

# How many of a user's matches are ranked, the newest: on PostgreSQL, GIN holds no positions,
# so ranking and phrases read each message's text again (30-50 µs each), and a word in most
# of a user's messages would cost seconds (bench/README.md, "Search"); SQLite does the same,
# so that both find the same messages.
RANKED = 1000


def _shown() -> str:
    """The messages of ``m`` the room page shows: not a streaming answer, not a version
    with a later one (an answer regenerated, a question edited), nor an answer to such a
    question (the page shows the answers to the newest version). As the context of an
    answer reads them (parley/contrib/orm.py, ``messages_context``)."""

    def superseded(alias: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM parley_message v WHERE v.version_of_id ="
            f" COALESCE({alias}.version_of_id, {alias}.id) AND v.seq > {alias}.seq)"
        )

    return (
        f"m.status <> 'streaming' AND NOT {superseded('m')} AND NOT EXISTS"
        f" (SELECT 1 FROM parley_message q WHERE q.id = m.reply_to_id AND {superseded('q')})"
    )


def _mine() -> str:
    return "JOIN parley_membership p ON p.room_id = m.room_id AND p.user_id = %s"


def search_hits(
    *, user_pk: Any, match: str, words: list[str], limit: int, offset: int
) -> list[int]:
    """The ids of the hits of ``match`` (:func:`parley.search.text.match_expression`; its
    ``words`` for databases without a full-text index), best first, ties newest first:
    ``limit`` of them from ``offset``."""
    vendor = connection.vendor
    if vendor == "postgresql":
        sql, params = _postgresql(user_pk=user_pk, match=match, words=words)
        params += [limit, offset]
    elif vendor == "sqlite":
        # The membership as IN (its rooms, read once), tested before the versions' EXISTS:
        # most matches are of other rooms. The newest RANKED, as on PostgreSQL: FTS5 reads
        # its matches newest first and stops there.
        sql = (
            f"SELECT id FROM (SELECT m.id, bm25({TABLE}) AS score FROM {TABLE}"
            f" JOIN parley_message m ON m.id = {TABLE}.rowid WHERE {TABLE} MATCH %s"
            " AND m.room_id IN (SELECT room_id FROM parley_membership WHERE user_id = %s)"
            f" AND {_shown()} ORDER BY {TABLE}.rowid DESC LIMIT {RANKED})"
            " ORDER BY score, id DESC LIMIT %s OFFSET %s"
        )
        params = [match, user_pk, limit, offset]
    else:
        likes = " AND ".join(["LOWER(m.text) LIKE %s"] * len(words))
        sql = (
            f"SELECT m.id FROM parley_message m {_mine()} WHERE {likes} AND {_shown()}"
            " ORDER BY m.id DESC LIMIT %s OFFSET %s"
        )
        params = [user_pk, *(f"%{word}%" for word in words), limit, offset]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _postgresql(*, user_pk: Any, match: str, words: list[str]) -> tuple[str, list[Any]]:
    """The statement and its first parameters. The index finds the messages holding every
    word (exactly: no text read again); of the user's, the newest ``RANKED`` are read, then
    kept if they hold the phrases too, and ranked."""
    config = get_config().search_config
    every = f"plainto_tsquery({regconfig(config)}, %s)"
    query = f"websearch_to_tsquery({regconfig(config)}, %s)"
    sql = (
        f"WITH found AS MATERIALIZED (SELECT m.id, m.text FROM parley_message m {_mine()}"
        f" WHERE {tsvector(config, 'm.text')} @@ {every} AND {_shown()}"
        f" ORDER BY m.id DESC LIMIT {RANKED}),"
        f" vectors AS MATERIALIZED (SELECT id, {tsvector(config)} AS vector FROM found)"
        f" SELECT id FROM vectors WHERE vector @@ {query}"
        f" ORDER BY ts_rank(vector, {query}, 1) DESC, id DESC LIMIT %s OFFSET %s"
    )
    return sql, [user_pk, " ".join(words), match, match]
