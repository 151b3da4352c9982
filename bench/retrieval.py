"""Retrieval quality and speed of the knowledge assistant, on a real index (issue 14).

    .venv/bin/python bench/retrieval.py [--sizes 1000,100000] [--rounds 3] [--show-misses]

Sets Django up on a temporary SQLite database with the example project's settings, indexes
the shipped knowledge base (docs/ and README.md) with ``parley_index``, as ``make run``
does (its time is printed: with the embedding model, the first run's cost), then asks the
questions of bench/questions/ (README.md there: written before tuning, the held-out set
never looked at while tuning) and reports for each set apart:

- on the questions with an answer: hit@1 and hit@3 (the first passage, or one of the first
  three, is a right section), MRR over the first ten, and the share wrongly refused (no
  passage at all); hit@3 of the paraphrases alone (target 0.9);
- on the questions without one (off-topic, adversarial): the share refused (target 0.95);
- what the offline assistant does with each kind: greet, introduce the site, quote, point
  at related sections, or say it does not know.

A follow-up is searched as Parley searches it: with the conversation before it. Then the
index is padded with generated help pages to each of ``--sizes`` passages, and the latency
of one search (p50, p99; target p99 <= 50 ms at 100,000) and the index's memory are
printed. The figures go to bench/results/retrieval-<date>.json as well.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "questions"
RESULTS = ROOT / "bench" / "results"

# The vocabulary of the generated help pages.
_NOUNS = (
    "account address alert archive audit backup badge balance batch billing branch browser "
    "budget cache calendar campaign card cart catalog channel checkout client cluster comment "
    "contract coupon credit customer dashboard database delivery device discount domain draft "
    "email export feed field filter folder form gateway group inventory invoice item label "
    "language layout ledger license limit list location login member menu message metric "
    "module network notice order owner package page partner password payment plan policy "
    "portal price printer product profile project quota receipt record region report request "
    "role route schedule search server session setting shipment signature storage store "
    "subscription supplier survey table tag task team template ticket token tracker upload "
    "user vendor voucher warehouse webhook widget workflow workspace zone"
)
_VERBS_TEXT = (
    "archives blocks changes checks creates deletes exports filters groups hides imports "
    "limits lists locks merges moves notifies opens publishes refreshes removes renames "
    "resets restores saves schedules sends shares shows signs sorts stores syncs tracks "
    "updates uploads validates"
)
_WORDS = _NOUNS.split()
_VERBS = _VERBS_TEXT.split()
_SECTIONS = [
    "Overview",
    "Getting started",
    "Settings",
    "Permissions",
    "Limits",
    "Troubleshooting",
    "Frequently asked questions",
]


@dataclass
class Question:
    q: str
    kind: str
    answers: list[tuple[str, str]]
    context: list[dict[str, str]]


def questions(name: str) -> list[Question]:
    with (QUESTIONS / f"{name}.jsonl").open() as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return [
        Question(r["q"], r["kind"], [tuple(a) for a in r["answers"]], r.get("context", []))  # type: ignore[misc]
        for r in rows
    ]


def filler_document(rng: random.Random) -> str:
    """A generated help page: a title and three to six sections of plausible sentences."""
    subject = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}"
    lines = [f"# The {subject} {rng.choice(['guide', 'manual', 'reference'])}", ""]
    for section in rng.sample(_SECTIONS, rng.randint(3, 6)):
        lines += [f"## {section} of the {subject}", ""]
        for _ in range(rng.randint(2, 5)):
            words = rng.sample(_WORDS, 4)
            sentence = (
                f"The {words[0]} {rng.choice(_VERBS)} each {words[1]} when the {words[2]} "
                f"{rng.choice(_VERBS)} its {words[3]}"
            )
            if rng.random() < 0.3:
                sentence += f", and an administrator {rng.choice(_VERBS)} the {subject}"
            lines.append(sentence + ".")
        lines.append("")
    return "\n".join(lines)


def setup_django(workdir: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
    # As `make run` (the example project defaults to DEBUG off, which needs a SECRET_KEY).
    os.environ.setdefault("DEBUG", "true")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def index(folders: list[Path], *, progress: bool = False) -> str:
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    out = io.StringIO()
    knowledge = {**settings.PARLEY.get("KNOWLEDGE", {}), "FOLDERS": folders}
    with override_settings(PARLEY={**settings.PARLEY, "KNOWLEDGE": knowledge}):
        options = {} if progress else {"no_progress": True}
        call_command("parley_index", stdout=out if not progress else sys.stdout, **options)
    return (out.getvalue().strip().splitlines() or [""])[-1]


def request_for(question: Question) -> Any:
    """The request Parley makes of this question: its conversation, then the question."""
    from parley.backends.base import AssistantRequest, Turn

    turns = [Turn(t["role"], t["content"]) for t in question.context]
    return AssistantRequest(turns=[*turns, Turn("user", question.q)])


def search(question: Question, limit: int = 10) -> list[Any]:
    from parley.knowledge.index import knowledge_search

    return knowledge_search(user=None, limit=limit, **query_of(question)).passages


def query_of(question: Question) -> dict[str, Any]:
    """What Parley searches for the question (before issue 14: the question alone)."""
    request = request_for(question)
    if not hasattr(request, "search_context"):
        return {"query": request.question}
    return {"query": request.question, "context": request.search_context}


def right(passage: Any, answers: list[tuple[str, str]]) -> bool:
    document = passage.document.split(":", 1)[1]
    headings = passage.title.split(" › ")
    return any(document == path and heading in headings for path, heading in answers)


def behaviour(question: Question, passages: list[Any]) -> str:
    """What the offline assistant does with the question: greet, about, quote, related,
    refuse (or compute)."""
    from dataclasses import replace

    from parley.backends import offline

    request = replace(request_for(question), passages=tuple(passages[:4]))
    if hasattr(offline, "reply_kind"):
        return str(offline.reply_kind(request))
    # Before issue 14 the offline assistant had no kinds: told apart by its words.
    text = offline.compose_answer(request)
    for start, kind in (("From *", "quote"), ("Hello", "greet"), ("I don't know", "refuse")):
        if text.startswith(start):
            return kind
    return "other"


def evaluate(name: str, *, show_misses: bool) -> dict[str, Any]:
    rows = questions(name)
    answered = [q for q in rows if q.answers and q.kind != "greeting"]
    unanswerable = [q for q in rows if not q.answers]
    ranks: dict[str, list[int | None]] = defaultdict(list)
    behaviours: dict[str, Counter[str]] = defaultdict(Counter)
    misses: list[str] = []
    refused = 0
    for q in rows:
        found = search(q)
        rank = next((i + 1 for i, p in enumerate(found) if right(p, q.answers)), None)
        if q in answered:
            ranks[q.kind].append(rank)
            ranks["all"].append(rank)
            if show_misses and (rank is None or rank > 3):
                titles = [p.title for p in found[:3]]
                misses.append(f"  {q.kind:12} {q.q!r}\n      -> {titles}\n      want {q.answers}")
        elif not q.answers:
            refused += not found
            if found and show_misses:
                misses.append(f"  {q.kind:12} not refused {q.q!r} -> {found[0].title}")
        behaviours[q.kind][behaviour(q, found)] += 1

    def share(values: list[int | None], top: int) -> float:
        return sum(r is not None and r <= top for r in values) / max(len(values), 1)

    everything = ranks["all"]
    report = {
        "questions": len(rows),
        "answerable": len(answered),
        "hit@1": share(everything, 1),
        "hit@3": share(everything, 3),
        "mrr": sum(1 / r for r in everything if r) / max(len(everything), 1),
        "wrongly_refused": sum(r is None for r in everything) / max(len(everything), 1),
        "paraphrase_hit@3": share(ranks["paraphrase"], 3),
        "by_kind_hit@3": {k: round(share(v, 3), 3) for k, v in ranks.items() if k != "all"},
        "offtopic_refused": refused / max(len(unanswerable), 1),
        "offline": {kind: dict(counts) for kind, counts in behaviours.items()},
    }
    print(
        f"{name:8} {len(rows)} questions ({len(answered)} with an answer, "
        f"{len(unanswerable)} without)\n"
        f"  hit@1 {report['hit@1']:.3f}  hit@3 {report['hit@3']:.3f}  MRR {report['mrr']:.3f}  "
        f"wrongly refused {report['wrongly_refused']:.3f}  "
        f"paraphrases hit@3 {report['paraphrase_hit@3']:.3f}  "
        f"off-topic refused {report['offtopic_refused']:.3f}\n"
        f"  hit@3 by kind: {report['by_kind_hit@3']}\n"
        f"  offline assistant: "
        + "; ".join(f"{k} {dict(v)}" for k, v in sorted(behaviours.items()))
    )
    if misses:
        print("\n".join(misses))
    return report


def embedder_of() -> Any:
    """This process's embedder (None before issue 14, or without one)."""
    try:
        from parley.knowledge.embeddings import embedder_get
    except ImportError:
        return None
    return embedder_get()


def embedding_time(embedder: Any) -> dict[str, float]:
    """What embedding one new question costs (p50 and p99, ms), over the held-out set's."""
    timings = []
    for question in questions("heldout"):
        embedder.cache_clear()
        started = time.perf_counter()
        embedder.encode([question.q])
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50": round(statistics.median(timings), 2), "p99": round(percentile(timings, 0.99), 2)}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# The generated pages are copies of this many distinct ones (about 1,100 passages): the
# model computes each passage's embedding once, in minutes, where 100,000 distinct ones
# would take an hour on two cores (the embedder keeps the last 4,096 texts it made vectors
# of: passages and titles). Searching costs the same: every copy is a passage of
# its own, ranked, masked and compared like the others.
DISTINCT_PAGES = 250


def pad(workdir: Path, real: list[Path], passages: int) -> Path:
    """A folder of generated help pages, enough for the index to hold about ``passages``."""
    from parley.knowledge.index import index_current

    have = len(index_current().entries)
    filler = workdir / f"filler-{passages}"
    filler.mkdir(exist_ok=True)
    rng = random.Random(3)
    pages = [filler_document(rng) for _ in range(DISTINCT_PAGES)]
    number = 0
    while have < passages:
        text = pages[number % DISTINCT_PAGES]
        (filler / f"page-{number:06d}.md").write_text(text)
        have += text.count("\n## ")
        number += 1
    return filler


def scale(workdir: Path, real: list[Path], passages: int, rounds: int) -> dict[str, Any]:
    from parley.knowledge import index as index_module
    from parley.knowledge.index import index_current, knowledge_search

    filler = pad(workdir, real, passages)
    started = time.perf_counter()
    index([*real, filler], progress=True)
    indexed = time.perf_counter() - started
    started = time.perf_counter()
    built = index_current()
    build = time.perf_counter() - started
    # What the index holds, measured on a second build: tracing slows the build it traces.
    index_module._current = None
    tracemalloc.start()
    traced = index_current()
    memory, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # ONNX Runtime's buffers (the int8 vectors of similarity scans) are not Python's; an
    # index of a checkout before them has none.
    memory += getattr(getattr(traced, "similarities", None), "nbytes", 0)
    asked = [q for name in ("tuning", "heldout") for q in questions(name)]
    embedder = embedder_of()
    timings = []
    for _ in range(rounds):
        for q in asked:
            query = query_of(q)
            if embedder is not None:
                # Each search embeds its question, as a new one would; a follow-up's previous
                # question was embedded when it was asked, in the process that answered it.
                embedder.cache_clear()
                if "context" in query and query["context"].question:
                    embedder.encode([query["context"].question])
            started = time.perf_counter()
            knowledge_search(user=None, **query)
            timings.append((time.perf_counter() - started) * 1000)
    result = {
        "passages": len(built.entries),
        "index_seconds": round(indexed, 1),
        "build_ms": round(build * 1000),
        "memory_mib": round(memory / 2**20, 1),
        "build_peak_mib": round(peak / 2**20, 1),
        "search_p50_ms": round(statistics.median(timings), 2),
        "search_p99_ms": round(percentile(timings, 0.99), 2),
    }
    print(
        f"{result['passages']:>7,} passages: parley_index {indexed:.1f} s, in-memory index "
        f"built in {build * 1000:.0f} ms holding {result['memory_mib']} MiB (Python's peak "
        f"while building: {result['build_peak_mib']} MiB); one search over "
        f"{len(timings)}: p50 {result['search_p50_ms']} ms, p99 {result['search_p99_ms']} ms"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000", help="passages to pad to ('' none)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--workdir", help="keep the database here (default: a new one)")
    parser.add_argument(
        "--sets", default="tuning,heldout", help="question sets (tune on 'tuning' alone)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        # A database kept from an earlier run indexes only what changed since.
        workdir = Path(args.workdir or tmp)
        setup_django(workdir)
        real = [ROOT / "docs", ROOT / "README.md"]
        started = time.perf_counter()
        embedder = embedder_of()
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        summary = index(real)
        indexed = time.perf_counter() - started
        model = embedder.name if embedder else "none (BM25 alone)"
        print(
            f"embeddings: {model}, loaded in {loaded:.1f} s; shipped knowledge base: "
            f"{summary} in {indexed:.1f} s (make run's first indexing)\n"
        )
        results: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "embeddings": model,
            "model_load_seconds": round(loaded, 2),
            "shipped_index_seconds": round(indexed, 1),
        }
        if embedder is not None:
            results["question_embedding_ms"] = embedding_time(embedder)
            print(f"one question embedded: {results['question_embedding_ms']}\n")
        for name in args.sets.split(","):
            results[name] = evaluate(name, show_misses=args.show_misses)
        results["scale"] = [
            scale(workdir, real, int(size), args.rounds) for size in args.sizes.split(",") if size
        ]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"retrieval-{datetime.now(UTC):%Y-%m-%d-%H%M}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresult: {path}")


if __name__ == "__main__":
    main()
