"""What a search asks for, read from what the user typed, and the snippet of a hit: pure
text, no database.

A search is words and "quoted phrases", all of which a message must hold. Nothing else
typed means anything: what would be query syntax to FTS5 or to PostgreSQL (``NEAR``, ``*``,
``-``, ``:``, ``OR``, parentheses) is read as the words around it, so no input is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..exceptions import ParleyError

# Letters and digits of any script: what FTS5's unicode61 tokenizer and PostgreSQL's parser
# take for words (both split on the rest, underscores included).
_WORD = re.compile(r"[^\W_]+")
_TERM = re.compile(r'"([^"]*)"?|(\S+)')
# More than this many terms is no longer a search; the rest are dropped.
MAX_TERMS = 16
# Words of context on either side of the first match in a snippet.
CONTEXT_WORDS = 12


class QueryTooLong(ParleyError):
    """The search is longer than ``SEARCH_MAX_QUERY_CHARS``; ``limit`` is that length."""

    def __init__(self, *, limit: int) -> None:
        super().__init__(f"Search for at most {limit} characters.")
        self.limit = limit


def search_terms(query: str, *, max_chars: int) -> list[tuple[str, ...]]:
    """The terms of ``query``: each a word, or a phrase's words in order, lower-cased.
    Empty if it has no word. Raises :class:`QueryTooLong` past ``max_chars``."""
    query = query.strip()
    if len(query) > max_chars:
        raise QueryTooLong(limit=max_chars)
    terms = []
    for phrase, word in _TERM.findall(query):
        words = tuple(found.casefold() for found in _WORD.findall(phrase or word))
        if words and words not in terms:
            terms.append(words)
    return terms[:MAX_TERMS]


def match_expression(terms: list[tuple[str, ...]]) -> str:
    """The terms as both FTS5's MATCH and PostgreSQL's ``websearch_to_tsquery`` read them
    the same way: each a "quoted phrase", all of them required. The terms hold letters and
    digits only, so nothing in them can end a quote."""
    return " ".join('"' + " ".join(words) + '"' for words in terms)


@dataclass(frozen=True)
class Segment:
    """A piece of a snippet; ``marked`` if it matched. Text, never markup: the page
    escapes it, and marks a matched piece up itself."""

    text: str
    marked: bool = False


def snippet(text: str, terms: list[tuple[str, ...]]) -> list[Segment]:
    """A window of ``text`` around its first word that matches, with every such word in it
    marked. A word matches if it begins with a term's word (case aside): so a stemming
    configuration's hit for "run" on "running" is marked too. Texts with no matching word
    (stemming found what prefixes do not) give their beginning."""
    wanted = {word for words in terms for word in words}
    spans = [match.span() for match in _WORD.finditer(text)]
    marked = [
        any(text[start:end].casefold().startswith(word) for word in wanted) for start, end in spans
    ]
    first = marked.index(True) if True in marked else 0
    low, high = max(0, first - CONTEXT_WORDS), min(len(spans), first + CONTEXT_WORDS + 1)
    if not spans:
        return [Segment(text[:200])]
    begin = 0 if low == 0 else spans[low][0]
    finish = len(text) if high == len(spans) else spans[high - 1][1]
    segments = [Segment("…")] if begin else []
    at = begin
    for (start, end), hit in zip(spans[low:high], marked[low:high], strict=True):
        if hit:
            segments += [Segment(text[at:start]), Segment(text[start:end], marked=True)]
            at = end
    segments.append(Segment(text[at:finish]))
    if finish < len(text):
        segments.append(Segment("…"))
    return [segment for segment in segments if segment.text]
