"""Words as retrieval sees them: lower-cased, stop words dropped, stemmed (Snowball English).

One function turns any text into terms, so that documents, questions and the sentences an
answer is composed from are compared on the same footing.
"""

from __future__ import annotations

import re
import threading

import Stemmer

# Identifiers split into their words: PARLEY_BACKEND -> parley, backend; llama.cpp -> llama,
# cpp; EchoBackend -> echobackend, echo, backend.
_WORD = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# ...and are kept whole as well (parley_backend, run-local), so that naming one finds it.
_COMPOUND = re.compile(r"\w+(?:[_-]\w+)+")

# English function words, and the words questions are made of ("how do I", "what should").
_STOPWORDS_TEXT = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during each
    either else every few for from further get gets got had has have having he her here hers
    herself him himself his how i if in into is it its itself just let me might more most
    much must my myself neither no nor not now of off on once one only or other ought our
    ours ourselves out over own please same shall she should so some such than that the
    their theirs them themselves then there these they this those through thus to too under
    until up upon us very via was we were what whatever when where whether which while who
    whom whose why will with within without would yes yet you your yours yourself yourselves
    many may
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

# PyStemmer's stemmers keep a cache and are not thread-safe: one per thread.
_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def text_terms(text: str) -> list[str]:
    """The terms of ``text``: words of two characters or more (or digits), lower-cased,
    without English stop words, stemmed, in order with repeats (a camel-case word also
    gives its parts); then each compound identifier whole, unstemmed (``PARLEY_BACKEND``
    gives ``parley``, ``backend`` and ``parley_backend``)."""
    words: list[str] = []
    for word in _WORD.findall(text):
        words.append(word.lower())
        parts = _CAMEL.split(word)
        if len(parts) > 1:
            words += [part.lower() for part in parts]
    words = [w for w in words if (len(w) > 1 or w.isdigit()) and w not in STOPWORDS]
    stems: list[str] = _stemmer().stemWords(words)  # PyStemmer ships no types
    return stems + _COMPOUND.findall(text.lower())
