"""Documents cut into passages: a Markdown document by its headings (a passage is a section,
titled with its heading path), plain text by paragraphs. Long sections are cut again
between blocks, so that every passage stays a readable size."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..rendering import markdown_headings

# A section longer than this is cut between paragraphs (never inside a code block).
MAX_PASSAGE_CHARS = 2000
TITLE_SEPARATOR = " › "

_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True, slots=True)
class Section:
    """One passage of a document: its heading path, the anchor of its heading ("" before
    the first heading) and its Markdown text."""

    title: str
    anchor: str
    text: str


def markdown_blocks(lines: list[str]) -> list[str]:
    """``lines`` grouped into blocks separated by blank lines; a fenced code block is one
    block whatever it holds (blank lines, other fences)."""
    blocks: list[str] = []
    current: list[str] = []
    fence = ""  # the marker of the code block open at this line, if any
    for line in lines:
        if match := _FENCE.match(line):
            if not fence:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = ""
        if not line.strip() and not fence:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _parts(lines: list[str], *, limit: int = MAX_PASSAGE_CHARS) -> list[str]:
    """The text of ``lines`` as one part, or several of at most about ``limit`` characters
    cut between blocks (a single longer block stays whole)."""
    parts: list[str] = []
    current = ""
    for block in markdown_blocks(lines):
        if current and len(current) + len(block) + 2 > limit:
            parts.append(current)
            current = ""
        current = f"{current}\n\n{block}" if current else block
    if current:
        parts.append(current)
    return parts


def markdown_sections(text: str, *, title: str) -> list[Section]:
    """``text`` (Markdown) as sections, in order. The document's title is its first level-1
    heading, else ``title``; each section's title is the path of headings down to it."""
    lines = text.splitlines()
    headings = markdown_headings(text)
    doc_title = next((h.text for h in headings if h.level == 1), "") or title
    sections: list[Section] = []
    starts = [h.line for h in headings] + [len(lines)]
    if starts[0] > 0:
        sections += [Section(doc_title, "", part) for part in _parts(lines[: starts[0]])]
    path: list[tuple[int, str]] = []
    for heading, end in zip(headings, starts[1:], strict=True):
        path = [(level, name) for level, name in path if level < heading.level]
        path.append((heading.level, heading.text))
        names = [name for _, name in path]
        if names[0] != doc_title:
            names.insert(0, doc_title)
        heading_title = TITLE_SEPARATOR.join(names)
        for part in _parts(lines[heading.line : end]):
            sections.append(Section(heading_title, heading.anchor, part))
    return sections


def text_sections(text: str, *, title: str) -> list[Section]:
    """Plain ``text`` as sections of whole paragraphs, all titled ``title``."""
    return [Section(title, "", part) for part in _parts(text.splitlines())]
