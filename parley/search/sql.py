"""The search itself, one statement per database: the only place it asks which database it
runs on. Each gives the ids of the best hits, best first, among the messages the page shows
of the rooms the user is a member of: the membership is a join of the statement, before the
ranking and the limit, never a filter of its results.

- PostgreSQL: ``websearch_to_tsquery`` against the GIN index of parley/search/schema.py,
  ranked by ``ts_rank``.
- SQLite: FTS5's ``MATCH`` on its table, ranked by ``bm25()``.
- Any other database: every word a case-blind ``LIKE`` on the text, newest first, with no
  index (a table scan of the user's rooms' messages): correct, slower, unranked.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from ..conf import get_config
from .schema import TABLE, regconfig, tsvector


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
        config = get_config().search_config
        vector = tsvector(config, "m.text")
        sql = (
            f"SELECT m.id FROM parley_message m {_mine()}"
            f" CROSS JOIN websearch_to_tsquery({regconfig(config)}, %s) AS s(query)"
            f" WHERE {vector} @@ s.query AND {_shown()}"
            f" ORDER BY ts_rank({vector}, s.query, 1) DESC, m.id DESC LIMIT %s OFFSET %s"
        )
        params: list[Any] = [user_pk, match, limit, offset]
    elif vendor == "sqlite":
        sql = (
            f"SELECT m.id FROM {TABLE} JOIN parley_message m ON m.id = {TABLE}.rowid {_mine()}"
            f" WHERE {TABLE} MATCH %s AND {_shown()}"
            f" ORDER BY bm25({TABLE}), m.id DESC LIMIT %s OFFSET %s"
        )
        params = [user_pk, match, limit, offset]
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
