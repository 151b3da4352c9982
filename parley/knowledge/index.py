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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import bm25s
import numpy as np

from ..backends.base import Passage
from ..conf import get_config
from ..models import KnowledgePassage
from .permissions import Reader, objects_of
from .store import version_get
from .text import text_terms

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, _User

# How many ranked candidates a search looks at, at most, to fill its places (each costs a
# coverage check; all of them are passages the readers may read).
MAX_CANDIDATES = 200
# How many of the best candidates (those clearing MIN_SCORE) a search considers, at least:
# a registration's callable permission is asked for those of them alone, with their objects
# loaded in one query per source, so that its cost is bounded whatever else matched.
WINDOW = 16

# The owner code of a passage without an owner, and of a user who owns no passage.
_NO_OWNER = -1
_NOT_AN_OWNER = -2


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored passage as the index keeps it."""

    source: str
    document: str
    title: str
    url: str
    text: str
    owner: str = ""
    permission: str = ""


class KnowledgeIndex:
    """An immutable BM25 index of ``entries`` (all passages of one index version).

    A passage is indexed with its title twice, then its text: the heading path is the best
    summary of what a section is about. Who may read each passage is kept as arrays of
    codes (its source, owner and permission), from which :meth:`readable` makes a user's
    mask.
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
        self.source_names, self.source_codes = _codes(e.source for e in entries)
        self.permission_names, self.permission_codes = _codes(
            (e.permission for e in entries), first=""
        )
        owners, owner_codes = _codes((e.owner for e in entries), first="")
        self.owner_codes = np.where(owner_codes == 0, _NO_OWNER, owner_codes)
        self.owners = {owner: code for code, owner in enumerate(owners) if owner}
        self.bm25: bm25s.BM25 | None = None
        if entries:
            self.bm25 = bm25s.BM25()
            self.bm25.index(terms, show_progress=False)

    def readable(self, reader: Reader) -> np.ndarray:
        """The mask (one boolean per passage) of the passages ``reader`` may read as far as
        rules known ahead decide: the source's rule, the stored permission, the owner. Its
        cost grows with the number of passages, sources and permissions, not with which of
        them the reader may not read. Passages of a source with a callable rule are left in:
        see :meth:`search`."""
        if not self.entries:
            return np.zeros(0, dtype=bool)
        sources = np.array([reader.source_rule(name) is not False for name in self.source_names])
        required = np.array([reader.owner_required(name) for name in self.source_names])
        permitted = np.array([reader.may(name) for name in self.permission_names])
        user = self.owners.get(reader.key, _NOT_AN_OWNER) if reader.key else _NOT_AN_OWNER
        owned = required[self.source_codes] | (self.owner_codes != _NO_OWNER)
        mask: np.ndarray = (
            sources[self.source_codes]
            & permitted[self.permission_codes]
            & (~owned | (self.owner_codes == user))
        )
        return mask

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
        self, *, query: str, readers: list[Reader], limit: int, min_score: float
    ) -> tuple[list[tuple[Entry, float]], bool]:
        """The best passages for ``query`` that every one of ``readers`` may read, best first,
        with their BM25 scores: at most ``limit``, each matching at least ``min_score`` of the
        query's weight (see :meth:`weights`); and whether a passage the first reader (the
        asker) would have been given alone was withheld because another may not read it.

        Two rankings: the room's, among the passages every reader's mask lets through (so
        that the asker's own passages never take its places), and the asker's alone, which
        decides ``withheld`` only. Passages the asker may not read are masked out of both,
        so they are never candidates and nothing about them is looked at. A callable
        permission is asked of the first :data:`WINDOW` candidates of each ranking alone.
        """
        terms, ids = self._terms(query)
        if self.bm25 is None or not ids or limit <= 0 or not readers:
            return [], False
        masks = [self.readable(reader) for reader in readers]
        scores = self.bm25.get_scores_from_ids(ids, weight_mask=masks[0].astype(np.float32))
        weights, size = self.weights(terms), max(limit, WINDOW)
        mine = self._window(scores, weights, size, min_score)
        ours = mine
        if len(readers) > 1:
            common = np.logical_and.reduce(masks)
            ours = self._window(np.where(common, scores, 0), weights, size, min_score)
        allowed = self._allowed([*mine, *ours], readers, masks)
        everyone = range(len(readers))
        own = _first(mine, limit, lambda p: allowed(p, 0))
        shared = _first(ours, limit, lambda p: all(allowed(p, i) for i in everyone))
        withheld = any(not all(allowed(p, i) for i in everyone) for p in own)
        return [(self.entries[p], float(scores[p])) for p in shared], withheld

    def _terms(self, query: str) -> tuple[list[str], list[int]]:
        """The terms of ``query`` that count (see :meth:`weights`), and the BM25 ids of
        those some passage holds."""
        if self.bm25 is None:
            return [], []
        # A compound no passage has ("time-out") is left to its parts, not counted missing.
        terms = [
            term
            for term in dict.fromkeys(text_terms(query))
            if term in self.idf or not ("_" in term or "-" in term)
        ]
        vocabulary = self.bm25.vocab_dict
        return terms, [vocabulary[term] for term in terms if term in vocabulary]

    def _window(
        self, scores: np.ndarray, weights: dict[str, float], size: int, min_score: float
    ) -> list[int]:
        """The positions of the first ``size`` candidates (by score) that clear
        ``min_score``, among the best :data:`MAX_CANDIDATES`."""
        candidates = np.flatnonzero(scores > 0)
        ranked = candidates[np.argsort(-scores[candidates], kind="stable")][:MAX_CANDIDATES]
        window: list[int] = []
        for position in ranked.tolist():
            if self.coverage(weights, position) >= min_score:
                window.append(position)
                if len(window) >= size:
                    break
        return window

    def _allowed(
        self, positions: list[int], readers: list[Reader], masks: list[np.ndarray]
    ) -> Callable[[int, int], bool]:
        """Whether reader number ``i`` may read the passage at ``position`` (one of
        ``positions``): its mask, then for a source with a callable rule, the callable
        (asked once per reader and passage), on objects loaded in one query per source."""
        undecided: dict[str, set[str]] = {}
        for position in positions:
            entry = self.entries[position]
            if any(reader.source_rule(entry.source) is None for reader in readers):
                undecided.setdefault(entry.source, set()).add(entry.document)
        objects = {source: objects_of(source, keys) for source, keys in undecided.items()}

        @cache
        def allowed(position: int, i: int) -> bool:
            entry = self.entries[position]
            obj = objects.get(entry.source, {}).get(entry.document)
            return bool(masks[i][position]) and readers[i].object_allowed(entry.source, obj)

        return allowed


def _first(positions: list[int], count: int, keep: Callable[[int], bool]) -> list[int]:
    """The first ``count`` of ``positions`` that ``keep`` keeps (asked no further)."""
    kept: list[int] = []
    for position in positions:
        if len(kept) >= count:
            break
        if keep(position):
            kept.append(position)
    return kept


def _codes(values: Iterable[str], *, first: str | None = None) -> tuple[list[str], np.ndarray]:
    """The distinct ``values`` (``first``, if given, as code 0), and each value's code."""
    names: dict[str, int] = {} if first is None else {first: 0}
    codes = [names.setdefault(value, len(names)) for value in values]
    return list(names), np.array(codes, dtype=np.int32)


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
            fields = ("source", "document", "title", "url", "text", "owner", "permission")
            entries = [Entry(*row) for row in rows.values_list(*fields)]
            index = _current = KnowledgeIndex(stamp=stamp, entries=entries, previous=index)
    return index


@dataclass(frozen=True, slots=True)
class Retrieval:
    """What a search found: the passages, best first, and whether passages that matched
    were withheld because not every reader may read them."""

    passages: list[Passage]
    withheld: bool = False


def knowledge_search(
    *,
    query: str,
    user: _User | AnonymousUser | None,
    audience: Iterable[_User] = (),
    limit: int | None = None,
    min_score: float | None = None,
) -> Retrieval:
    """The passages that best answer ``query`` among those ``user`` and every user of
    ``audience`` (the other members of a shared room) may read, best first; ``limit`` and
    ``min_score`` default to ``KNOWLEDGE["TOP_K"]`` and ``["MIN_SCORE"]``. Empty when
    nothing matches well enough. ``withheld`` says that a passage ``user`` alone would
    have been given was left out for another reader."""
    settings = get_config().knowledge
    readers = [Reader(user)] + [Reader(other) for other in audience if other != user]
    found, withheld = index_current().search(
        query=query,
        readers=readers,
        limit=settings["TOP_K"] if limit is None else limit,
        min_score=settings["MIN_SCORE"] if min_score is None else min_score,
    )
    passages = [
        Passage(
            title=entry.title,
            text=entry.text,
            url=entry.url,
            document=f"{entry.source}:{entry.document}",
            score=score,
        )
        for entry, score in found
    ]
    return Retrieval(passages=passages, withheld=withheld)


def passages_search(
    *,
    query: str,
    user: _User | AnonymousUser | None,
    limit: int | None = None,
    min_score: float | None = None,
) -> list[Passage]:
    """The passages that best answer ``query`` among those ``user`` may read, best first
    (:func:`knowledge_search` for one reader)."""
    return knowledge_search(query=query, user=user, limit=limit, min_score=min_score).passages
