"""Retrieval quality and speed of the knowledge assistant, on a real index.

    .venv/bin/python bench/retrieval.py [--rounds 5] [--documents 1000]

Sets Django up on a temporary SQLite database with the example project's settings, indexes
the shipped knowledge base (docs/ and README.md) with ``parley_index``, then:

1. asks each question of :data:`QUESTIONS` (written against the shipped documents, each with
   the documents that answer it) and prints hit@1 and hit@3: the share of questions whose
   first passage, or one of the first three, comes from an answering document; and how many
   of :data:`OFF_TOPIC` questions find nothing (the assistant then says it does not know);
2. pads the index to ``--documents`` documents with generated help pages (deterministic
   filler in the style of a product's documentation) and prints hit@1 and hit@3 again, and
   the median and p99 latency of one offline answer: retrieval (version check, BM25,
   permissions) plus composing the quoted answer, over ``--rounds`` rounds of every question.

Targets (issue #3): hit@3 >= 0.9, p99 <= 50 ms at 1,000 documents.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (question, the documents that answer it)
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    # README.md
    ("What do I need installed to try the demo?", ("README.md", "docs/faq.md")),
    ("How do I run two servers sharing rooms through Redis?", ("README.md", "docs/deploying.md")),
    ("What does Parley give me out of the box?", ("README.md",)),
    # docs/configuration.md
    ("What is the default STREAM_FLUSH_INTERVAL?", ("docs/configuration.md",)),
    ("How many earlier messages does the assistant see?", ("docs/configuration.md",)),
    ("What is PARLEY_LAYER_PREFIX for?", ("docs/configuration.md", "docs/deploying.md")),
    ("What does the warning parley.W001 mean?", ("docs/configuration.md",)),
    ("How do I add Parley to the asgi.py of my project?", ("docs/configuration.md",)),
    ("What happens if PARLEY has a key Parley does not know?", ("docs/configuration.md",)),
    ("How do I change the log level of the parley logger?", ("docs/configuration.md",)),
    ("How many messages come in one history page?", ("docs/configuration.md",)),
    # docs/protocol.md
    (
        "What does the server send back once my message is stored?",
        ("docs/protocol.md", "docs/architecture.md"),
    ),
    ("How should a client catch up after reconnecting?", ("docs/protocol.md",)),
    ("What does the offset of a delta frame mean?", ("docs/protocol.md",)),
    ("What does close code 4401 mean?", ("docs/protocol.md", "docs/faq.md")),
    ("Why would a client send a client_id with each message?", ("docs/protocol.md",)),
    ("Which error code is returned when a frame is not valid JSON?", ("docs/protocol.md",)),
    ("Can I send binary frames over the socket?", ("docs/protocol.md",)),
    ("What does more mean in a history frame?", ("docs/protocol.md",)),
    # docs/backends.md
    ("How do I write a backend that echoes the question?", ("docs/backends.md", "docs/faq.md")),
    ("What exception should a backend raise when it cannot answer?", ("docs/backends.md",)),
    ("Which options does the scripted backend accept?", ("docs/backends.md",)),
    ("Does the OpenAI backend retry a failed request?", ("docs/backends.md",)),
    ("Why are user messages prefixed with the author's name?", ("docs/backends.md",)),
    ("Which URL do I use for LM Studio?", ("docs/backends.md", "docs/faq.md")),
    # docs/architecture.md
    ("Why does Parley use the pub/sub channel layer of channels-redis?", ("docs/architecture.md",)),
    ("How are sequence numbers kept free of gaps?", ("docs/architecture.md",)),
    ("What is the heartbeat of a streaming answer?", ("docs/architecture.md",)),
    ("Which module holds the wire format?", ("docs/architecture.md",)),
    ("Is the pub/sub layer at-most-once?", ("docs/architecture.md",)),
    ("Who enforces one answer at a time per room across processes?", ("docs/architecture.md",)),
    # docs/knowledge.md
    ("How do I register a Django model for the assistant to answer from?", ("docs/knowledge.md",)),
    ("Which ranking algorithm finds the passages?", ("docs/knowledge.md",)),
    ("How are Markdown files cut into passages?", ("docs/knowledge.md",)),
    ("When is a registered object indexed again?", ("docs/knowledge.md",)),
    ("How does a server process notice that the index changed?", ("docs/knowledge.md",)),
    ("Which options does the llama.cpp backend take?", ("docs/knowledge.md", "docs/backends.md")),
    ("How do passages get into the prompt of an OpenAI model?", ("docs/knowledge.md",)),
    # docs/deploying.md
    ("How do I configure nginx to proxy the WebSockets?", ("docs/deploying.md",)),
    ("What should I run on every deploy?", ("docs/deploying.md",)),
    ("Is SQLite fine for production?", ("docs/deploying.md",)),
    ("How do I run uvicorn with several workers?", ("docs/deploying.md",)),
    ("What does X-Forwarded-Proto have to do with HTTPS?", ("docs/deploying.md",)),
    # docs/faq.md
    ("How do I get an empty database again?", ("docs/faq.md",)),
    ("How can I invite a colleague to my room?", ("docs/faq.md",)),
    ("Why can't I ask a question while an answer is streaming?", ("docs/faq.md",)),
    ("How do I put the demo on port 8080?", ("docs/faq.md",)),
    ("How do I connect Ollama?", ("docs/faq.md", "README.md", "docs/backends.md")),
]

OFF_TOPIC = [
    "What is the capital of Australia?",
    "How do I bake sourdough bread?",
    "Who won the football world cup in 1998?",
    "What's the weather like in Paris tomorrow?",
    "Recommend a good science fiction novel",
    "How many legs does a spider have?",
    "Translate good morning into Japanese",
    "What is the boiling point of ethanol?",
]

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


def filler_document(number: int, rng: random.Random) -> str:
    """A generated help page: a title and three to six sections of plausible sentences."""
    subject = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}"
    lines = [f"# The {subject} {rng.choice(['guide', 'manual', 'reference'])} ({number})", ""]
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
    # As `make run` (the example project defaults to DEBUG off, which needs a SECRET_KEY);
    # the servers started later inherit it.
    os.environ.setdefault("DEBUG", "true")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def index(folders: list[Path]) -> str:
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    out = io.StringIO()
    knowledge = {**settings.PARLEY.get("KNOWLEDGE", {}), "FOLDERS": folders}
    with override_settings(PARLEY={**settings.PARLEY, "KNOWLEDGE": knowledge}):
        call_command("parley_index", "--no-progress", stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def hit_rates() -> tuple[float, float, list[str]]:
    from parley.knowledge.index import passages_search

    first = three = 0
    misses = []
    for question, answering in QUESTIONS:
        found = [p.document.split(":", 1)[1] for p in passages_search(query=question, user=None)]
        first += bool(found[:1] and found[0] in answering)
        hit = any(document in answering for document in found[:3])
        three += hit
        if not hit:
            misses.append(f"  miss: {question!r} -> {found[:3]} (expected {answering})")
    return first / len(QUESTIONS), three / len(QUESTIONS), misses


def answer_once(question: str) -> str:
    from parley.backends.base import AssistantRequest, Turn
    from parley.backends.offline import compose_answer
    from parley.knowledge.index import passages_search

    passages = passages_search(query=question, user=None)
    request = AssistantRequest(turns=[Turn("user", question)], passages=tuple(passages))
    return compose_answer(request)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--documents", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        workdir = Path(tmp)
        setup_django(workdir)
        from parley.knowledge.index import index_current, passages_search
        from parley.knowledge.sources import files_listed

        real = [ROOT / "docs", ROOT / "README.md"]
        print(f"{len(QUESTIONS)} questions, {len(OFF_TOPIC)} off-topic questions")
        print(f"shipped knowledge base: {index(real)}")
        at1, at3, misses = hit_rates()
        refused = sum(not passages_search(query=q, user=None) for q in OFF_TOPIC)
        print(f"  hit@1 {at1:.3f}   hit@3 {at3:.3f}   off-topic refused {refused}/{len(OFF_TOPIC)}")
        print("\n".join(misses))

        filler = workdir / "filler"
        filler.mkdir()
        rng = random.Random(3)
        padding = args.documents - len(files_listed(folders=real))
        for number in range(padding):
            (filler / f"page-{number:04d}.md").write_text(filler_document(number, rng))
        started = time.perf_counter()
        summary = index([*real, filler])
        print(f"padded: {summary} (parley_index {time.perf_counter() - started:.1f} s)")
        started = time.perf_counter()
        built = index_current()
        print(
            f"  in-memory index of {len(built.entries)} passages built in "
            f"{(time.perf_counter() - started) * 1000:.0f} ms (a process's first search)"
        )
        at1, at3, misses = hit_rates()
        print(f"  hit@1 {at1:.3f}   hit@3 {at3:.3f}")
        print("\n".join(misses))

        timings = []
        for _ in range(args.rounds):
            for question in [q for q, _ in QUESTIONS] + OFF_TOPIC:
                started = time.perf_counter()
                answer_once(question)
                timings.append((time.perf_counter() - started) * 1000)
        print(
            f"  offline answer latency over {len(timings)} answers: "
            f"median {statistics.median(timings):.2f} ms, p99 {percentile(timings, 0.99):.2f} ms, "
            f"max {max(timings):.2f} ms"
        )

        page = filler / "page-0000.md"
        page.write_text(page.read_text() + "\nOne more sentence about the archive.\n")
        index([*real, filler])
        started = time.perf_counter()
        index_current()
        print(
            f"  rebuild after one document changed: "
            f"{(time.perf_counter() - started) * 1000:.0f} ms (every process, on its next search)"
        )
        print(f"\nexample answer:\n{answer_once('How do I connect Ollama?')}")


if __name__ == "__main__":
    main()
