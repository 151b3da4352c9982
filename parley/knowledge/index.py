"""The in-memory search index: BM25 (bm25s) over every stored passage, rebuilt lazily.

Each server process holds one :class:`KnowledgeIndex`, stamped with the version of the
tables it was built from. Every search first reads the current version (one indexed
query); when another process (or a signal in this one) has changed the index since, the
passages are loaded again and the index rebuilt before answering.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np

from ..backends.base import Passage
from ..conf import get_config
from ..models import KnowledgePassage
from .permissions import Reader
from .store import version_get
from .text import text_terms

# How many ranked candidates a search looks at, at most, to fill its places: bounds the
# object permission checks when a user may read few of the best matches.
MAX_CANDIDATES = 200


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored passage as the index keeps it."""

    source: str
    document: str
    title: str
    url: str
    text: str


class KnowledgeIndex:
    """An immutable BM25 index of ``entries`` (all passages of one index version).

    A passage is indexed with its title twice, then its text: the heading path is the best
    summary of what a section is about.
    """

    def __init__(
        self, *, stamp: str, entries: list[Entry], previous: KnowledgeIndex | None = None
    ) -> None:
        self.stamp = stamp
        self.entries = entries
        # The terms of passages the previous index had are not computed again: after a
        # change, rebuilding costs the new passages' stemming, not the whole index's.
        known = previous.terms_of if previous is not None else {}
        self.terms_of: dict[tuple[str, str], list[str]] = {}
        for e in entries:
            key = (e.title, e.text)
            if key not in self.terms_of:
                terms_of = known.get(key) or text_terms(f"{e.title}\n{e.title}\n{e.text}")
                self.terms_of[key] = terms_of or [""]
        terms = [self.terms_of[(e.title, e.text)] for e in entries]
        self.term_sets = [frozenset(t) for t in terms]
        count = len(entries)
        frequency = Counter(term for terms_of in self.term_sets for term in terms_of)
        self.idf = {term: _idf(count, n) for term, n in frequency.items()}
        by_source: dict[str, list[int]] = {}
        for position, entry in enumerate(entries):
            by_source.setdefault(entry.source, []).append(position)
        self.sources = {source: np.array(rows) for source, rows in by_source.items()}
        self.bm25: bm25s.BM25 | None = None
        if entries:
            self.bm25 = bm25s.BM25()
            self.bm25.index(terms, show_progress=False)

    def weights(self, terms: list[str]) -> dict[str, float]:
        """How much each of a question's ``terms`` weighs: its IDF; a term no passage holds
        weighs the median of the others (a word of the question the documents never use
        counts against every passage, as much as a typical word of the question)."""
        known = {term: self.idf[term] for term in terms if term in self.idf}
        if not known:
            return dict.fromkeys(terms, 1.0)
        unknown = statistics.median(known.values())
        return {term: known.get(term, unknown) for term in terms}

    def coverage(self, weights: dict[str, float], position: int) -> float:
        """The share of the question's weight (see :meth:`weights`) held by the passage at
        ``position``, from 0 to 1."""
        held = self.term_sets[position]
        found = sum(weight for term, weight in weights.items() if term in held)
        return found / sum(weights.values())

    def search(
        self, *, query: str, reader: Reader, limit: int, min_score: float
    ) -> list[tuple[Entry, float]]:
        """The best passages for ``query`` that ``reader`` may read, best first, with their
        BM25 scores: at most ``limit``, each matching at least ``min_score`` of the
        query's weight (see :meth:`weights`).

        Passages the reader may not read are removed before ranking is cut off, so they
        never take a place, and nothing about them is returned.
        """
        # A compound no passage has ("time-out") is left to its parts, not counted missing.
        terms = [
            term
            for term in dict.fromkeys(text_terms(query))
            if term in self.idf or not ("_" in term or "-" in term)
        ]
        if self.bm25 is None or not terms or limit <= 0:
            return []
        ids = [self.bm25.vocab_dict[term] for term in terms if term in self.bm25.vocab_dict]
        if not ids:
            return []
        mask = np.zeros(len(self.entries), dtype=np.float32)
        for source, positions in self.sources.items():
            if reader.source_rule(source) is not False:
                mask[positions] = 1.0
        scores = self.bm25.get_scores_from_ids(ids, weight_mask=mask)
        candidates = np.flatnonzero(scores > 0)
        ranked = candidates[np.argsort(-scores[candidates], kind="stable")][:MAX_CANDIDATES]
        found: list[tuple[Entry, float]] = []
        weights = self.weights(terms)
        for position in ranked.tolist():
            if self.coverage(weights, position) < min_score:
                continue
            entry = self.entries[position]
            if reader.source_rule(entry.source) is None and not reader.document_allowed(
                entry.source, entry.document
            ):
                continue
            found.append((entry, float(scores[position])))
            if len(found) >= limit:
                break
        return found


def _idf(count: int, frequency: int) -> float:
    return math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))


_lock = threading.Lock()
_current: KnowledgeIndex | None = None


def index_current() -> KnowledgeIndex:
    """This process's index, rebuilt first if the stored passages changed since it was
    built (by any process)."""
    global _current
    stamp = version_get()
    index = _current
    if index is not None and index.stamp == stamp:
        return index
    with _lock:
        index = _current
        if index is None or index.stamp != stamp:
            # Read after the stamp: if the passages change meanwhile, the stamp read next
            # time differs from this one and the index is rebuilt again.
            rows = KnowledgePassage.objects.order_by("source", "document", "position")
            fields = ("source", "document", "title", "url", "text")
            entries = [Entry(*row) for row in rows.values_list(*fields)]
            index = _current = KnowledgeIndex(stamp=stamp, entries=entries, previous=index)
    return index


def passages_search(
    *, query: str, user: Any, limit: int | None = None, min_score: float | None = None
) -> list[Passage]:
    """The passages that best answer ``query`` among those ``user`` may read, best first;
    ``limit`` and ``min_score`` default to ``KNOWLEDGE["TOP_K"]`` and ``["MIN_SCORE"]``.
    Empty when nothing matches well enough."""
    settings = get_config().knowledge
    found = index_current().search(
        query=query,
        reader=Reader(user),
        limit=settings["TOP_K"] if limit is None else limit,
        min_score=settings["MIN_SCORE"] if min_score is None else min_score,
    )
    return [
        Passage(
            title=entry.title,
            text=entry.text,
            url=entry.url,
            document=f"{entry.source}:{entry.document}",
            score=score,
        )
        for entry, score in found
    ]
