"""Members' search of their rooms' messages (docs/operations.md, "Search")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..conf import get_config
from ..models import Message
from .sql import search_hits
from .text import Segment, match_expression, search_terms, snippet

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, _User


@dataclass(frozen=True)
class Hit:
    """A message found, read with its room and author, and its snippet."""

    message: Message
    snippet: list[Segment]


@dataclass(frozen=True)
class SearchResults:
    """One page of hits, best first, and whether more follow."""

    hits: list[Hit]
    more: bool


NOTHING = SearchResults(hits=[], more=False)


def messages_search(
    *,
    user: _User | AnonymousUser,
    query: str,
    limit: int | None = None,
    offset: int = 0,
) -> SearchResults:
    """The messages matching ``query`` (words and "quoted phrases", all required: see
    parley/search/text.py) among those the room page shows (no streaming answer, no version
    a later one replaced) of the rooms ``user`` is a member of now, best first; ``limit`` of
    them (``SEARCH_PAGE_SIZE``) from ``offset``.

    Nothing for a query without words, nor for anyone not logged in (a visitor's
    conversation is no member's room). Raises :class:`~parley.search.text.QueryTooLong`
    for a query over ``SEARCH_MAX_QUERY_CHARS``.
    """
    config = get_config()
    terms = search_terms(query, max_chars=config.search_max_query_chars)
    if not terms or not user.is_authenticated:
        return NOTHING
    limit = limit or config.search_page_size
    ids = search_hits(
        user_pk=user.pk,
        match=match_expression(terms),
        words=[word for words in terms for word in words],
        limit=limit + 1,
        offset=max(0, offset),
    )
    found = Message.objects.select_related("room", "author").in_bulk(ids[:limit])
    hits = [
        Hit(message=found[pk], snippet=snippet(found[pk].text, terms))
        for pk in ids[:limit]
        if pk in found  # deleted since, between the two reads
    ]
    return SearchResults(hits=hits, more=len(ids) > limit)
