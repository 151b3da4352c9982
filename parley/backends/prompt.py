"""What a language model is sent, shared by every model backend (OpenAI-compatible,
llama.cpp): the system prompt, the retrieved passages as numbered sources, the room's
turns; and the list of those sources that ends each answer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .base import AssistantRequest, Passage

DEFAULT_SYSTEM_PROMPT = (
    "You are the assistant in a Parley chat room. Several people may talk to you in the same "
    'room; each of their messages starts with the author\'s name and a colon, like "alice: ...". '
    "Answer the latest message, addressing its author by name when several people are talking. "
    "Do not start your reply with your own name. Use Markdown when it helps."
)

KNOWLEDGE_PROMPT = (
    "Numbered excerpts of this site's documents that may answer the latest message follow. "
    "Answer from them and cite the ones you use by number, like [1]. If they do not answer "
    "it, say that you do not know rather than guess."
)

# The line that ends an answer when passages were withheld (AssistantRequest.withheld). It
# names nothing of what was withheld.
WITHHELD_NOTE = "Some sources were withheld: not every member of this room may read them."

WITHHELD_PROMPT = (
    "Some of this site's documents that may answer the latest message were withheld, because "
    "not every member of this room may read them. If what follows does not answer it, say "
    "that you cannot answer here, without guessing what they hold."
)

# Passage text beyond this, per source, is left out of the prompt.
MAX_SOURCE_CHARS = 1500

_LINK_TEXT = re.compile(r"([\[\]\\])")


@dataclass
class Source:
    """One numbered source: a title and URL, with the text of its passages."""

    number: int
    title: str
    url: str
    texts: list[str] = field(default_factory=list)


def passages_sources(passages: tuple[Passage, ...] | list[Passage]) -> list[Source]:
    """The passages grouped by source (title and URL), numbered from 1 in order of first
    appearance: two parts of one long section are one source."""
    sources: dict[tuple[str, str], Source] = {}
    for passage in passages:
        key = (passage.title, passage.url)
        if key not in sources:
            sources[key] = Source(number=len(sources) + 1, title=passage.title, url=passage.url)
        sources[key].texts.append(passage.text.strip())
    return list(sources.values())


def passages_prompt(
    passages: tuple[Passage, ...] | list[Passage], *, max_chars: int = MAX_SOURCE_CHARS
) -> str:
    """The passages for a prompt: :data:`KNOWLEDGE_PROMPT`, then each source as
    ``[n] title`` and its text (cut at ``max_chars``). Empty without passages."""
    if not passages:
        return ""
    blocks = [KNOWLEDGE_PROMPT]
    for source in passages_sources(passages):
        text = "\n\n".join(source.texts)
        if len(text) > max_chars:
            text = text[: max_chars - 1].rstrip() + "…"
        blocks.append(f"[{source.number}] {source.title}\n{text}")
    return "\n\n".join(blocks)


def build_messages(
    request: AssistantRequest, *, system_prompt: str, max_source_chars: int = MAX_SOURCE_CHARS
) -> list[dict[str, Any]]:
    """The chat ``messages`` for ``request``: one system message (the system prompt, then
    :data:`WITHHELD_PROMPT` if passages were withheld, then the passages as numbered
    sources, if any), then each turn, then the answer's rounds of tool calls so far.

    User turns with an author are prefixed ``"<author>: "``, so that the model can tell the
    members of a shared room apart; assistant turns go in as the assistant's own. A round
    is an assistant message with its ``tool_calls``, then a ``tool`` message per call with
    its result, in the OpenAI API's form.
    """
    context = passages_prompt(request.passages, max_chars=max_source_chars)
    withheld = WITHHELD_PROMPT if request.withheld else ""
    system = "\n\n".join(part for part in (system_prompt, withheld, context) if part)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for turn in request.turns:
        if turn.role == "user" and turn.author:
            messages.append({"role": "user", "content": f"{turn.author}: {turn.content}"})
        else:
            messages.append({"role": turn.role, "content": turn.content})
    for round_ in request.rounds:
        calls = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in round_.calls
        ]
        messages.append({"role": "assistant", "content": round_.text or None, "tool_calls": calls})
        messages.extend(
            {"role": "tool", "tool_call_id": call.id, "content": result}
            for call, result in zip(round_.calls, round_.results, strict=True)
        )
    return messages


def tools_param(request: AssistantRequest) -> list[dict[str, Any]]:
    """The request's tools as the OpenAI API's ``tools`` field (empty without tools)."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.parameters,
            },
        }
        for spec in request.tools
    ]


def markdown_link(title: str, url: str) -> str:
    """``[title](url)`` with the title's brackets escaped; the bare title without a URL."""
    text = _LINK_TEXT.sub(r"\\\1", title)
    if not url:
        return text
    if any(char in url for char in " ()<>"):
        url = f"<{url.replace('<', '%3C').replace('>', '%3E')}>"
    return f"[{text}]({url})"


# A citation of source n, "[2]" (or "[1][2]"), but not a link's text "[2](…)", nor a
# reference definition's label (a line "[2]: …", dropped first).
_CITATION = re.compile(r"\[(\d{1,3})\](?!\()")
_DEFINITION = re.compile(r"^ {0,3}\[\d{1,3}\]:.*$", re.M)
_CODE = re.compile(r"(`{3,}|~{3,}).*?(?:\1|\Z)|`+[^`]*`+", re.S)

SOURCES_CITED = "**Sources**"
SOURCES_GIVEN = "**Sources given to the assistant** (none cited)"


def sources_markdown(passages: tuple[Passage, ...] | list[Passage], *, answer: str) -> str:
    """The Markdown that ends a model's ``answer`` given ``passages``: the sources it cites
    by number ([1]), numbered as in the prompt, under "Sources"; if it cites none, all of
    them, under a heading that says they were given and not cited. Empty without passages.
    A source is never shown as used when the answer did not say it used it."""
    if not passages:
        return ""
    sources = passages_sources(passages)
    prose = _CODE.sub("", _DEFINITION.sub("", answer))  # x[1] in code cites nothing
    cited = {int(number) for number in _CITATION.findall(prose)}
    shown = [s for s in sources if s.number in cited]
    heading = SOURCES_CITED if shown else SOURCES_GIVEN
    # Not an ordered list: Markdown would number [2] and [5] as 2 and 3.
    lines = [f"- \\[{s.number}\\] {markdown_link(s.title, s.url)}" for s in shown or sources]
    return f"\n\n{heading}\n\n" + "\n".join(lines) + "\n"


def withheld_markdown(request: AssistantRequest) -> str:
    """The line that ends an answer whose request had passages withheld (after its
    sources): :data:`WITHHELD_NOTE`, in italics. Empty otherwise."""
    return f"\n\n_{WITHHELD_NOTE}_\n" if request.withheld else ""
