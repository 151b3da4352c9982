"""The in-memory search index: BM25 (bm25s) over every stored passage, rebuilt lazily.

Each server process holds one :class:`KnowledgeIndex`, stamped with the version of the
tables it was built from. Every search first reads the current version (one indexed
query); when another process (or a signal in this one) has changed the index since, the
passages are loaded again and the index rebuilt before answering.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

import bm25s
import numpy as np

from ..backends.base import About, Passage, SearchContext
from ..conf import get_config
from ..models import KnowledgePassage
from .chunking import TITLE_SEPARATOR
from .embeddings import Embedder, embedder_get, passage_windows, vectors_from, vectors_model
from .permissions import Reader, objects_of
from .sources import FILES
from .store import version_get
from .text import text_terms

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, _User

    from .graphs import Similarities

logger = logging.getLogger("parley.knowledge")

# How many ranked candidates a search looks at, at most, to fill its places (each costs a
# coverage check; all of them are passages the readers may read).
MAX_CANDIDATES = 200
# How many of the best candidates (those clearing MIN_SCORE) a search considers, at least:
# a registration's callable permission is asked for those of them alone, with their objects
# loaded in one query per source, so that its cost is bounded whatever else matched.
WINDOW = 16

# Reciprocal rank fusion's constant (Cormack et al., 2009): a passage's fused score is the
# sum over the rankings of 1 / (RRF_K + its rank); 60 keeps the top of one ranking from
# outweighing a passage high in both.
RRF_K = 60

NO_CONTEXT = SearchContext()

# How much what a question is asked in the light of (its asker's previous turn) weighs
# against the question itself, in BM25's scores and in the query's embedding.
CONTEXT_WEIGHT = 0.5

# How much the rankings by similarity (of the whole passage, of its title) weigh in the
# fusion against BM25's 1: meaning ranks paraphrases better than words do (bench/retrieval.py
# on the tuning questions).
DENSE_WEIGHT = 2.0
TITLE_WEIGHT = 0.5

# With embeddings, a passage that holds the question's words but whose meaning is further
# from it than this is no match ("how do I set up a VPN on my router" shares "set up" and
# "router" with asgi.py's routing). A passage is as close as its closest window, and some
# window of a long section is often a little close to anything: 0.35 refused more of
# bench/questions' off-topic tuning questions than 0.25, and no on-topic one.
WORDS_ALONE = 0.35

# The owner code of a passage without an owner, and of a user who owns no passage.
_NO_OWNER = -1
_NOT_AN_OWNER = -2


@dataclass(frozen=True, slots=True)
class Match:
    """A passage a search found: its ``position`` in the index, its fused rank ``score``,
    the share of the query's weight it holds (``coverage``), the cosine ``similarity``
    of its embedding to the query's (0 without embeddings) and which of its windows is the
    closest (-1 without embeddings)."""

    position: int
    score: float
    coverage: float
    similarity: float
    window: int = -1


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
        self,
        *,
        stamp: str,
        entries: list[Entry],
        previous: KnowledgeIndex | None = None,
        dense: Dense | None = None,
    ) -> None:
        self.stamp = stamp
        self.entries = entries
        # Which passages have an embedding, and the scan of the similarities to their
        # windows, then to their titles (see :func:`_dense`); None: BM25 alone.
        self.embedded = np.zeros(len(entries), dtype=bool)
        self.similarities: Similarities | None = None
        self.window_starts = np.zeros(0, dtype=np.int64)
        if dense is not None:
            self.embedded, self.similarities = dense.embedded, dense.similarities
            self.window_starts = dense.starts
        self._about: dict[str, About | None] = {}
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

    def about(self, key: str) -> About | None:
        """The introduction the file ``key`` makes (see :func:`knowledge_about`), worked out
        once per index: every answer asks for it."""
        if key not in self._about:
            files = [e for e in self.entries if e.source == FILES]
            first = next((e for e in files if e.document == key), None)
            titles = dict.fromkeys(
                e.title.split(TITLE_SEPARATOR)[0] for e in files if e.document != key
            )
            self._about[key] = None
            if first is not None:
                self._about[key] = About(
                    title=first.title.split(TITLE_SEPARATOR)[0],
                    url=first.url,
                    text=first.text,
                    documents=list(titles),
                )
        return self._about[key]

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
        ``position``, from 0 to 1 (0 for a question without terms)."""
        if not weights:
            return 0.0
        held = self.term_sets[position]
        found = sum(weight for term, weight in weights.items() if term in held)
        return found / sum(weights.values())

    def search(
        self,
        *,
        query: str,
        readers: list[Reader],
        limit: int,
        min_score: float,
        context: str = "",
        vector: np.ndarray | None = None,
        min_similarity: float = 1.0,
    ) -> tuple[list[Match], bool]:
        """The best passages for ``query`` (and its embedding ``vector``, if any) that every
        one of ``readers`` may read, best first: at most ``limit``, each matching at least
        ``min_score`` of the query's weight (see :meth:`weights`; its own words, not
        ``context``'s, which only rank, weighing :data:`CONTEXT_WEIGHT`) or with a cosine
        similarity of at least ``min_similarity``; and whether a passage the first reader
        (the asker) would have been given alone was withheld because another may not read
        it.

        Passages are ranked by reciprocal rank fusion of their BM25 rank and their rank by
        similarity: a passage near the top of either ranking, and above all of both, comes
        first, without comparing a BM25 score with a cosine.

        Two rankings: the room's, among the passages every reader's mask lets through (so
        that the asker's own passages never take its places), and the asker's alone, which
        decides ``withheld`` only. Passages the asker may not read are masked out of both,
        before any cut-off, so they are never candidates and nothing about them is looked
        at. A callable permission is asked of the first :data:`WINDOW` candidates of each
        ranking alone.
        """
        terms, ids = self._terms(query)
        _, context_ids = self._terms(context) if context else ([], [])
        similarity = None
        windows = np.zeros(0, dtype=np.float32)
        if vector is not None and self.similarities is not None:
            # A passage is as close as its closest window.
            both = self.similarities(vector)
            windows = both[: len(both) - len(self.entries)]
            similarity = (np.maximum.reduceat(windows, self.window_starts), both[len(windows) :])
        found = ids or context_ids or similarity is not None
        if not self.entries or not found or limit <= 0 or not readers:
            return [], False
        masks = [self.readable(reader) for reader in readers]
        weight_mask = masks[0].astype(np.float32)
        lexical = np.zeros(len(self.entries), dtype=np.float32)
        for weight, some in ((1.0, ids), (CONTEXT_WEIGHT, context_ids)):
            if some and self.bm25 is not None:
                lexical += weight * self.bm25.get_scores_from_ids(some, weight_mask=weight_mask)
        weights, size = self.weights(terms), max(limit, WINDOW)

        def window(mask: np.ndarray) -> list[Match]:
            return self._window(lexical, similarity, mask, weights, size, min_score, min_similarity)

        mine = window(masks[0])
        ours = window(np.logical_and.reduce(masks)) if len(readers) > 1 else mine
        allowed = self._allowed([m.position for m in (*mine, *ours)], readers, masks)
        everyone = range(len(readers))
        own = _first(mine, limit, lambda p: allowed(p, 0))
        shared = _first(ours, limit, lambda p: all(allowed(p, i) for i in everyone))
        withheld = any(not all(allowed(m.position, i) for i in everyone) for m in own)
        if len(windows):
            shared = [replace(m, window=self._closest(windows, m.position)) for m in shared]
        return shared, withheld

    def _closest(self, windows: np.ndarray, position: int) -> int:
        """Which window of the passage at ``position`` is the most similar (``windows``:
        the similarities of every window)."""
        start = self.window_starts[position]
        end = self.window_starts[position + 1] if position + 1 < len(self.entries) else len(windows)
        return int(np.argmax(windows[start:end]))

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
        self,
        lexical: np.ndarray,
        similarity: tuple[np.ndarray, np.ndarray] | None,
        mask: np.ndarray,
        weights: dict[str, float],
        size: int,
        min_score: float,
        min_similarity: float,
    ) -> list[Match]:
        """The first ``size`` candidates among those ``mask`` lets through, by fused rank
        (see :meth:`search`), that match well enough: by their share of the query's
        weight, or by similarity. Each ranking looks at its best :data:`MAX_CANDIDATES`."""
        fused: dict[int, float] = {}
        rankings = [(1.0, lexical)]
        if similarity is not None:
            rankings += [(DENSE_WEIGHT, similarity[0]), (TITLE_WEIGHT, similarity[1])]
        for weight, scores in rankings:
            for rank, position in enumerate(_best(np.where(mask, scores, 0), MAX_CANDIDATES)):
                fused[position] = fused.get(position, 0.0) + weight / (RRF_K + rank + 1)
        matches: list[Match] = []
        for position in sorted(fused, key=lambda p: -fused[p]):
            covered = self.coverage(weights, position)
            if similarity is None or not self.embedded[position]:
                # Without embeddings, or not embedded yet (stored by a process without the
                # model, or before it): its words alone decide.
                near = 0.0
                sure = covered >= min_score
            else:
                near = float(max(similarity[0][position], similarity[1][position]))
                sure = near >= min_similarity or (covered >= min_score and near >= WORDS_ALONE)
            if sure:
                matches.append(Match(position, fused[position], covered, near))
                if len(matches) >= size:
                    break
        return matches

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


_scan_failed = False


@dataclass(frozen=True, slots=True)
class Dense:
    """Which passages of an index have vectors; the scan of the similarities to every
    window, then to every title; where each passage's windows start in it."""

    embedded: np.ndarray
    similarities: Similarities
    starts: np.ndarray


def _dense(stored: list[tuple[bytes | memoryview | None, str]], embedder: Embedder) -> Dense | None:
    """The :class:`Dense` vectors of the ``stored`` passages (each vector with the name of
    the model that made it) that ``embedder`` made (the float16 matrices they come from
    are let go of once scanned); None if it made none, or if the scan cannot be built:
    then the index is searched by words alone, as without a model. That cause is told in
    full once per process (every change of the passages builds a new index)."""
    global _scan_failed
    model = vectors_model(embedder)
    if not any(name == model for _, name in stored):
        return None
    vectors = vectors_from(
        [vector if name == model else None for vector, name in stored], embedder.dimensions
    )
    try:
        # ONNX Runtime is loaded with the first stored vectors.
        from .graphs import Similarities

        return Dense(
            vectors.embedded, Similarities((vectors.windows, vectors.titles)), vectors.starts
        )
    except Exception as exc:
        if not _scan_failed:
            logger.exception("dense retrieval is off for this index (BM25 alone)")
        else:
            logger.warning("dense retrieval is off for this index (BM25 alone): %r", exc)
        _scan_failed = True
        return None


def _first(matches: list[Match], count: int, keep: Callable[[int], bool]) -> list[Match]:
    """The first ``count`` of ``matches`` whose position ``keep`` keeps (asked no further)."""
    kept: list[Match] = []
    for match in matches:
        if len(kept) >= count:
            break
        if keep(match.position):
            kept.append(match)
    return kept


def _best(scores: np.ndarray, count: int) -> list[int]:
    """The positions of the ``count`` highest positive ``scores``, highest first (ties in
    position order)."""
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > count:
        candidates = candidates[np.argpartition(-scores[candidates], count - 1)[:count]]
        candidates.sort()
    ranked: list[int] = candidates[np.argsort(-scores[candidates], kind="stable")].tolist()
    return ranked


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
    # Another embedder (the settings changed) is another index: its vectors differ. Its
    # configuration says so without loading its model (an index without vectors needs none).
    configured = json.dumps(get_config().knowledge["EMBEDDINGS"], sort_keys=True, default=str)
    stamp = f"{version_get()}:{configured}"
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
            entries, stored, models = [], [], set()
            for *row, vector, vector_model in rows.values_list(*fields, "vector", "vector_model"):
                entries.append(Entry(*row))
                stored.append((vector, vector_model))
                models.add(vector_model)
            embedder = embedder_get() if models - {""} else None
            dense = _dense(stored, embedder) if embedder is not None else None
            del stored  # the rows' bytes: the scan holds the vectors now
            index = _current = KnowledgeIndex(
                stamp=stamp, entries=entries, previous=index, dense=dense
            )
    return index


def knowledge_about(
    *, user: _User | AnonymousUser | None, audience: Iterable[_User] = ()
) -> About | None:
    """The site's introduction (see :class:`~parley.backends.base.About`) for ``user`` and
    every user of ``audience``; ``None`` when ``KNOWLEDGE["ABOUT"]`` names no indexed file,
    or when one of them may not read the files (a visitor, unless visitors may)."""
    key = get_config().knowledge["ABOUT"]
    readers = _readers(user, audience)
    if not key or any(reader.source_rule(FILES) is False for reader in readers):
        return None
    return index_current().about(key)


def _readers(user: _User | AnonymousUser | None, audience: Iterable[_User]) -> list[Reader]:
    """The readers whose rights a search for ``user`` in front of ``audience`` keeps to:
    the asker first."""
    return [Reader(user)] + [Reader(other) for other in audience if other != user]


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
    context: SearchContext = NO_CONTEXT,
    audience: Iterable[_User] = (),
    limit: int | None = None,
    min_score: float | None = None,
) -> Retrieval:
    """The passages that best answer ``query``, asked after ``context`` (the asker's
    previous turn: its words rank, weighing :data:`CONTEXT_WEIGHT`, without counting
    towards ``min_score``; the embeddings of its question, already made when it was
    asked, and of its answer's start are mixed into the query's by the same weight: "so can
    it call tools yet?" is about what the answer said), among those ``user`` and every
    user of ``audience`` (the other members of a shared room) may read, best first; ``limit`` and
    ``min_score`` default to ``KNOWLEDGE["TOP_K"]`` and ``["MIN_SCORE"]``. Empty when
    nothing matches well enough. ``withheld`` says that a passage ``user`` alone would
    have been given was left out for another reader."""
    settings = get_config().knowledge
    readers = _readers(user, audience)
    index = index_current()
    # Only an index with vectors needs the model (loaded then, once).
    embedder = embedder_get() if index.similarities is not None else None
    vector = None
    if embedder is not None and query.strip():
        texts = [query, *(text for text in (context.question, context.answer) if text.strip())]
        vectors = embedder.encode(texts)
        vector = vectors[0] + CONTEXT_WEIGHT * vectors[1:].sum(axis=0)
        vector /= max(float(np.linalg.norm(vector)), 1e-12)
    found, withheld = index.search(
        query=query,
        context=context.words,
        readers=readers,
        limit=settings["TOP_K"] if limit is None else limit,
        min_score=settings["MIN_SCORE"] if min_score is None else min_score,
        vector=vector,
        min_similarity=settings["MIN_SIMILARITY"],
    )
    passages = []
    for match in found:
        entry = index.entries[match.position]
        passages.append(
            Passage(
                title=entry.title,
                text=entry.text,
                url=entry.url,
                document=f"{entry.source}:{entry.document}",
                score=match.score,
                match=max(match.coverage, match.similarity),
                # Cut only for a passage found by meaning alone (up to 3 ms of CPU for a
                # long one): of the others, the offline assistant quotes words.
                focus=_window_text(embedder, entry, match.window) if not match.coverage else "",
            )
        )
    return Retrieval(passages=passages, withheld=withheld)


def _window_text(embedder: Embedder | None, entry: Entry, window: int) -> str:
    """The text of window number ``window`` of ``entry``'s passage (without its title):
    cut again as it was when embedded, which takes only the tokenizer. "" without one."""
    if embedder is None or window < 0:
        return ""
    windows = passage_windows(embedder, entry.title, entry.text)
    return windows[window].partition("\n")[2] if window < len(windows) else ""


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
