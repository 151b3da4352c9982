"""The sentences of a passage that answer a question: what the offline assistant quotes.

A passage's Markdown is cut into units (sentences of paragraphs, list items, table rows,
code blocks); each unit is weighed by the question's terms it holds (rarer terms weigh
more); the best few are kept in their original order and put back together as Markdown,
table rows under their table's header.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .chunking import markdown_blocks
from .text import text_terms

# An excerpt stops growing past this many words (one unit is always kept, however long).
MAX_WORDS = 110
MAX_UNITS = 4
# A unit is quoted only if it weighs at least this share of the best one.
RELATIVE_FLOOR = 0.5
# A code block next to a quoted sentence is quoted with it if it is at most this long.
MAX_CODE_LINES = 12

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`*_(\[“\"])")
_LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True, slots=True)
class Unit:
    """A quotable piece of a passage. ``block`` numbers the block it belongs to; ``header``
    is the header of a table row's table."""

    kind: str  # "sentence", "item", "row" or "code"
    text: str
    block: int
    header: str = ""


def _block_units(block: str, number: int) -> list[Unit]:
    lines = block.splitlines()
    if _FENCE.match(lines[0]):
        return [Unit("code", block, number)]
    if _HEADING.match(lines[0]):
        lines = lines[1:]
        if not lines:
            return []
    if all(line.lstrip().startswith("|") for line in lines):
        header = "\n".join(lines[:2])
        return [Unit("row", line, number, header) for line in lines[2:]]
    if _LIST_ITEM.match(lines[0]):
        items: list[list[str]] = []
        for line in lines:
            if _LIST_ITEM.match(line) or not items:
                items.append([line.strip()])
            else:
                items[-1].append(line.strip())
        return [Unit("item", " ".join(item), number) for item in items]
    paragraph = " ".join(line.strip().lstrip(">").strip() for line in lines)
    return [Unit("sentence", s, number) for s in _SENTENCE_END.split(paragraph) if s.strip()]


def passage_units(text: str) -> list[Unit]:
    """``text`` (Markdown) as units, in order; headings are left out."""
    units: list[Unit] = []
    for number, block in enumerate(markdown_blocks(text.splitlines())):
        units += _block_units(block, number)
    return units


def _join(units: list[Unit]) -> str:
    """Selected units back as Markdown: sentences of a paragraph on one line, list items as
    a list, table rows under their header, blocks apart."""
    parts: list[str] = []
    previous: Unit | None = None
    for unit in units:
        same_block = previous is not None and previous.block == unit.block
        if unit.kind == "sentence":
            text = unit.text
            if same_block and previous is not None and previous.kind == "sentence":
                parts[-1] += " " + text
                previous = unit
                continue
        elif unit.kind == "item":
            text = unit.text if _LIST_ITEM.match(unit.text) else f"- {unit.text}"
            if same_block:
                parts[-1] += "\n" + text
                previous = unit
                continue
        elif unit.kind == "row":
            if same_block:
                parts[-1] += "\n" + unit.text
                previous = unit
                continue
            text = f"{unit.header}\n{unit.text}"
        else:
            text = unit.text
        parts.append(text)
        previous = unit
    return "\n\n".join(parts)


def excerpts_lead(text: str) -> str:
    """The start of a passage's Markdown, as an excerpt: its first units, up to about
    :data:`MAX_WORDS` words (one unit at least), with the code block the last introduces."""
    return _lead(passage_units(text))


def _lead(units: list[Unit]) -> str:
    chosen: list[Unit] = []
    words = 0
    for unit in units:
        size = len(unit.text.split())
        if chosen and (words + size > MAX_WORDS or len(chosen) >= MAX_UNITS):
            break
        chosen.append(unit)
        words += size
    following = units[len(chosen)] if len(chosen) < len(units) else None
    if (
        chosen
        and following is not None
        and _belongs(chosen[-1], following, after=True, relevant=False)
    ):
        chosen.append(following)
    return _join(chosen)


def excerpts_for(
    question: str, texts: list[str], focuses: Sequence[str] | None = None
) -> list[str]:
    """For each passage text, the Markdown excerpt that best answers ``question``. When no
    unit of it holds a term of the question (a passage found by its meaning alone): the
    units of its ``focuses`` entry (the part of it closest to the question in meaning,
    ``Passage.focus``), or its start (:func:`excerpts_lead`) without one.

    Units are weighed by the question's terms they hold, each term by how rare it is among
    all the units (so "parley" in a Parley document counts little). The best units (those
    weighing at least half the best one) are kept, up to :data:`MAX_UNITS` and about
    :data:`MAX_WORDS` words, with the short code blocks next to a kept sentence and the
    sentence introducing a kept code block.
    """
    wanted = set(text_terms(question))
    units_of = [passage_units(text) for text in texts]
    terms_of = [[set(text_terms(unit.text)) & wanted for unit in units] for units in units_of]
    count = sum(len(units) for units in units_of) or 1
    frequency = Counter(term for terms in terms_of for unit_terms in terms for term in unit_terms)
    weight = {term: math.log(1 + count / n) for term, n in frequency.items()}
    excerpts = []
    for units, terms, focus in zip(units_of, terms_of, focuses or [""] * len(texts), strict=True):
        scores = [sum(weight[term] for term in unit_terms) for unit_terms in terms]
        if not any(scores):
            scores = _within(units, focus)
        excerpts.append(_excerpt(units, scores) if any(scores) else _lead(units))
    return excerpts


def _within(units: list[Unit], focus: str) -> list[float]:
    """1 for each unit that is part of ``focus`` (a window of the passage's text, cut
    otherwise: by sentences and lines, run together) or holds it, 0 for the others."""
    window = _spaced(focus)
    return [
        float(bool(window) and (_spaced(unit.text) in window or window in _spaced(unit.text)))
        for unit in units
    ]


def _spaced(text: str) -> str:
    return " ".join(text.split())


def _excerpt(units: list[Unit], scores: list[float]) -> str:
    order = sorted(range(len(units)), key=lambda i: (-scores[i], i))
    chosen: set[int] = set()
    words = 0
    floor = RELATIVE_FLOOR * max(scores, default=0.0)
    for index in order:
        if scores[index] <= 0 or scores[index] < floor or len(chosen) >= MAX_UNITS:
            break
        size = len(units[index].text.split())
        if chosen and words + size > MAX_WORDS:
            continue
        chosen.add(index)
        words += size
    for index in sorted(chosen):
        for neighbour in (index - 1, index + 1):
            if 0 <= neighbour < len(units) and _belongs(
                units[index],
                units[neighbour],
                after=neighbour > index,
                relevant=scores[neighbour] > 0,
            ):
                chosen.add(neighbour)
    return _join([units[index] for index in sorted(chosen)])


def _belongs(unit: Unit, neighbour: Unit, *, after: bool, relevant: bool) -> bool:
    """Whether ``neighbour`` (just ``after`` ``unit``, or before it) must be quoted with it:
    the sentence introducing a quoted code block ("Run:"), or a short code block that a
    quoted sentence introduces, comments ("(Ollama shown)") or that holds question words."""
    if unit.kind == "code":
        return not after and neighbour.text.rstrip().endswith(":")
    if neighbour.kind != "code" or len(neighbour.text.splitlines()) > MAX_CODE_LINES:
        return False
    introduces = after and unit.text.rstrip().endswith(":")
    comments = not after and unit.text.startswith("(")
    return introduces or comments or relevant
