"""Speed of the llama.cpp backend with the model ``make run-local`` uses (SmolLM2-135M).

    .venv/bin/python bench/llamacpp.py [--threads N] [--max-tokens 128]

Needs ``make install-llamacpp``. Sets Django up like bench/retrieval.py (a temporary SQLite
database with the shipped knowledge base indexed), then answers a few questions about Parley
through ``LlamaCppBackend.stream``, with the retrieved passages in the prompt, exactly as
in a room. Prints the model's load time and, per answer, the prompt's size in tokens, the
time to the first token, the tokens generated and the generation speed (tokens per second
after the first one); then the medians, and one answer in full.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "How do I connect Ollama?",
    "What does the Stop button do?",
    "How do I run several server processes?",
    "Which ranking algorithm finds the passages?",
    "What does close code 4401 mean?",
]


async def answer(backend, question: str) -> tuple[int, float, int, float, str]:
    """``(prompt tokens, seconds to the first token, tokens, seconds in all, text)``."""
    from parley.backends.base import AssistantRequest, TextDelta, Turn
    from parley.backends.prompt import sources_markdown
    from parley.knowledge.index import passages_search

    passages = passages_search(query=question, user=None)
    request = AssistantRequest(
        turns=[Turn("user", question, author="alice")], user="alice", passages=tuple(passages)
    )
    llama = backend.model()
    prompt = llama.tokenize(
        "\n".join(m["content"] for m in backend.messages(request)).encode(), add_bos=False
    )
    sources = sources_markdown(request.passages[: backend.max_passages])
    pieces: list[str] = []
    first = total = 0.0
    started = time.perf_counter()
    async for event in backend.stream(request):
        if not isinstance(event, TextDelta):
            continue  # the closing Finish
        piece = event.text
        if not pieces:
            first = time.perf_counter() - started
        if passages and piece == sources:
            break  # the sources list that ends the answer is not generated
        pieces.append(piece)
        total = time.perf_counter() - started
    return len(prompt), first, len(pieces), total, "".join(pieces) + sources


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    from bench.retrieval import index, setup_django

    # A script, not a server: its ORM calls may run on the event loop's thread.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        setup_django(Path(tmp))
        print(f"knowledge base: {index([ROOT / 'docs', ROOT / 'README.md'])}")
        from parley.backends.llamacpp import LlamaCppBackend

        backend = LlamaCppBackend(n_threads=args.threads, max_tokens=args.max_tokens)
        started = time.perf_counter()
        backend.model()
        print(f"model {backend.model_path.name}: loaded in {time.perf_counter() - started:.2f} s")
        firsts, speeds = [], []
        text = ""
        for question in QUESTIONS:
            prompt, first, tokens, total, text_of = await answer(backend, question)
            speed = (tokens - 1) / (total - first) if tokens > 1 and total > first else 0.0
            firsts.append(first)
            speeds.append(speed)
            text = text or text_of
            print(
                f"  {question!r}: prompt {prompt} tokens, first token {first * 1000:.0f} ms, "
                f"{tokens} tokens in {total:.2f} s, {speed:.0f} tokens/s"
            )
        print(
            f"median: first token {statistics.median(firsts) * 1000:.0f} ms, "
            f"{statistics.median(speeds):.0f} tokens/s"
        )
        print(f"\n{QUESTIONS[0]}\n{text}")
        await backend.aclose()


if __name__ == "__main__":
    asyncio.run(main())
