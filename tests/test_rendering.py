"""Answer Markdown to HTML: the finished answer, the answer while it streams (block by
block, as a client assembles it), code highlighting, and the sanitiser's rules on both."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley import rendering
from parley.rendering import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_CLASSES,
    ALLOWED_TAGS,
    MAX_UNSETTLED,
    BlocksUpdate,
    MarkdownStream,
    render_blocks,
    render_markdown,
)
from parley.testing import AnswerText
from tests.payloads import PWN, hostile_payloads

# Those without reference definitions (see the test of them).
DOCS = [
    path
    for path in sorted((Path(__file__).resolve().parent.parent / "docs").glob("*.md"))
    if "]:" not in path.read_text()
]

# Pieces that start and end Markdown's blocks and spans, so that random texts made of them
# settle blocks in every way the grammar allows (no reference definitions: see
# test_a_reference_defined_later_changes_only_the_block_that_uses_it).
PIECES = [
    "\n", "\n\n", " ", "  \n", "text", "more words", "# ", "## ", "Title\n===", "- ", "* ",
    "1. ", "2) ", "> ", "```", "```python\n", "~~~\n", "    ", "| a | b |", "|---|---|", "---",
    "***", "**", "*", "_", "`", "~~", "[link](https://example.com)", "![alt](https://x.test/i)",
    "<b>", "&amp;", "\\", "#x", "-x", ">", "|", "def f():\n    return 1\n",
    "a", "b c", "1", ".", ")", "(", ";", "=", "&amp", "&#35", "_b_", "[a](u", "\u00a0", "\t",
    "\u3000", "\u2003",
]  # fmt: skip
markdown_texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


def chunks(text: str, cuts: list[int]) -> list[str]:
    """``text``'s prefixes, ending at each cut (sorted, deduplicated) and at its end."""
    ends = sorted({cut for cut in cuts if 0 < cut < len(text)} | {len(text)})
    return [text[:end] for end in ends]


def stream(prefixes: list[str]) -> tuple[MarkdownStream, list[BlocksUpdate], AnswerText]:
    """Render each prefix in turn, as the answer's flushes do; check on the way that no
    settled block is ever sent again."""
    renderer, client, updates = MarkdownStream(), AnswerText(), []
    for prefix in prefixes:
        settled = renderer.blocks[: renderer.settled]
        update = renderer.update(prefix)
        if update is None:
            continue
        assert update.start == len(settled), "an update rewrote a settled block"
        assert renderer.blocks[: len(settled)] == settled
        assert client.apply_blocks(update.wire()), "an update that does not follow the one before"
        assert client.html == renderer.blocks
        updates.append(update)
    return renderer, updates, client


def assert_settled_blocks_are_final(text: str, renderer: MarkdownStream) -> None:
    """Each block settled while streaming is that block of the finished answer: the page
    never redraws it when `done` comes."""
    final = render_blocks(text)
    settled = renderer.blocks[: renderer.settled]
    assert settled == final[: len(settled)]


@settings(max_examples=300, deadline=None)
@given(text=markdown_texts, cuts=st.lists(st.integers(0, 400), max_size=30))
def test_blocks_settled_while_streaming_are_those_of_the_finished_answer(
    text: str, cuts: list[int]
) -> None:
    renderer, _, _ = stream(chunks(text, cuts))
    assert_settled_blocks_are_final(text, renderer)


@settings(max_examples=100, deadline=None)
@given(text=markdown_texts)
def test_streaming_one_character_at_a_time_settles_only_final_blocks(text: str) -> None:
    renderer, _, _ = stream([text[:end] for end in range(1, len(text) + 1)])
    assert_settled_blocks_are_final(text, renderer)


@settings(max_examples=300, deadline=None)
@given(text=markdown_texts, cuts=st.lists(st.integers(0, 400), max_size=40))
def test_each_update_renders_what_rendering_its_text_afresh_would(
    text: str, cuts: list[int]
) -> None:
    """Rendering the answer incrementally (settled blocks kept, words added to a paragraph
    without parsing it again) gives, at every update, the blocks a stream that renders that
    whole text at once gives."""
    renderer = MarkdownStream()
    for prefix in chunks(text, cuts):
        renderer.update(prefix)
        afresh = MarkdownStream()
        afresh.update(prefix)
        assert shown(renderer, prefix) == shown(afresh, prefix), prefix


def shown(renderer: MarkdownStream, text: str) -> list[str]:
    """What a client shows of ``text`` with the renderer's last update: its blocks, and the
    text after them at the end of the last one, as a text node (escaped as HTML writes
    one)."""
    after = html.escape(text[renderer.chars :], quote=False)
    if not after or not renderer.blocks:
        return [*renderer.blocks, after] if after else renderer.blocks
    last = renderer.blocks[-1]
    end = re.search(r"(</(?:p|li|td|code|h[1-6])>\n(?:</[a-z]+>\n)*)$", last)
    if end is None:  # a rule, an empty list item: the text goes after it
        return [*renderer.blocks, after]
    return [*renderer.blocks[:-1], last[: end.start()] + after + end.group()]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("Hello\u3000", "Hello\u3000world"),  # a Unicode space, stripped at a block's end
        ("[foo]:", "[foo]: https://example.com"),  # a paragraph, until it is a definition
        ("```\nline1\n", "```\nline1\nline2"),  # a code block's last newline
    ],
)
def test_what_a_client_shows_between_updates_is_the_rendering(before: str, after: str) -> None:
    renderer = MarkdownStream()
    renderer.update(before)
    renderer.update(after)
    afresh = MarkdownStream()
    afresh.update(after)
    assert shown(renderer, after) == shown(afresh, after)


def test_a_huge_block_being_written_is_parsed_again_only_as_it_grows_by_half(monkeypatch):
    renderer = MarkdownStream()
    row = "| parley.E001 | a check of the settings |\n"
    table = "| check | what |\n|---|---|\n" + row * 200  # 8 KB, one block
    parses = []
    original = rendering._md.parse
    monkeypatch.setattr(rendering._md, "parse", lambda *a: parses.append(1) or original(*a))
    for end in range(100, len(table), 100):
        renderer.update(table[:end])
    updates = len(range(100, len(table), 100))
    below = MAX_UNSETTLED // 100  # every update parses while the block is small
    assert below <= len(parses) <= below + 3 < updates  # then at 1.5x, 2.25x… the size
    assert renderer.blocks[0].startswith("<table>")


def test_words_added_to_a_paragraph_need_no_update_nor_a_parse(monkeypatch) -> None:
    """The client shows them right as text after the paragraph's last word."""
    renderer = MarkdownStream()
    renderer.update("# Plan\n\nFirst we")
    parses = []
    monkeypatch.setattr("parley.rendering._md.parse", lambda *a: parses.append(a) or [])
    assert renderer.update("# Plan\n\nFirst we pack the bags") is None
    assert parses == []
    assert shown(renderer, "# Plan\n\nFirst we pack the bags")[-1] == (
        "<p>First we pack the bags</p>\n"
    )


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_a_real_document_streamed_in_pieces_settles_into_its_final_rendering(path: Path) -> None:
    """Parley's own docs, in pieces of 7 characters (a model's few tokens per flush): every
    block but the last settles, and what the client assembles is the finished rendering,
    except the last block's highlighting."""
    text = path.read_text()
    renderer, updates, client = stream([text[:end] for end in range(7, len(text) + 7, 7)])
    final = render_blocks(text)
    assert renderer.settled == len(final) - 1
    assert client.html[:-1] == final[:-1]
    assert len(updates) > len(final)  # blocks were sent as they grew, not at the end


def test_only_the_block_being_written_is_sent_again() -> None:
    renderer = MarkdownStream()
    first = renderer.update("# Deploying\n\nBehind **ng")
    assert first == BlocksUpdate(
        0, ["<h1>Deploying</h1>\n", "<p>Behind **ng</p>\n"], chars=24, after=0
    )
    second = renderer.update("# Deploying\n\nBehind **nginx**, set\n\n- the up")
    assert second is not None and second.start == 1 and second.after == 24
    assert second.html == [
        "<p>Behind <strong>nginx</strong>, set</p>\n",
        "<ul>\n<li>the up</li>\n</ul>\n",
    ]
    assert renderer.update("# Deploying\n\nBehind **nginx**, set\n\n- the up") is None
    snapshot = renderer.snapshot()
    assert snapshot.start == 0 and snapshot.html == renderer.blocks and snapshot.chars == 44


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("para\n#", "para\n#x more"),  # "#" alone is an empty heading; "#x" is text
        ("para\n***", "para\n***x***"),  # a rule, until it is emphasis
        ("para\n---", "para\n---\nmore"),  # a setext heading of the paragraph
        ("| a | b |", "| a | b |\n|---|---|\n"),  # the paragraph becomes a table's head
        ("text\n| a |\n|-", "text\n| a |\n|---|---|"),  # a table, until its columns differ
        ("- a\n\n", "- a\n\n  b"),  # the list item goes on after a blank line
    ],
)
def test_a_block_is_not_settled_while_a_later_line_can_still_change_it(
    before: str, after: str
) -> None:
    renderer = MarkdownStream()
    renderer.update(before)
    assert renderer.settled == 0
    update = renderer.update(after)
    assert update is not None and update.start == 0
    assert update.html == render_blocks(after)


def test_a_reference_defined_later_changes_only_the_block_that_uses_it() -> None:
    """A block that uses a reference defined further down shows it as text until the end;
    one defined before is a link at once."""
    text = "See [the docs][d].\n\n[d]: https://example.com/docs\n\nAgain [the docs][d].\n\nEnd.\n"
    renderer, _, _ = stream(chunks(text, list(range(0, len(text), 5))))
    final = render_blocks(text)
    assert renderer.blocks[0] == "<p>See [the docs][d].</p>\n" != final[0]
    assert shown(renderer, text.rstrip())[1:] == final[1:]


def test_code_is_highlighted_once_its_block_is_settled() -> None:
    code = "```python\ndef answer(question):\n    return '<b>42</b>'\n"
    renderer = MarkdownStream()
    renderer.update(code)
    assert renderer.blocks == [  # its text up to its last non-space
        '<pre><code class="language-python">'
        "def answer(question):\n    return '&lt;b&gt;42&lt;/b&gt;'</code></pre>\n"
    ]
    renderer.update(code + "```\n\nDone")
    highlighted = renderer.blocks[0]
    assert '<span class="k">def</span>' in highlighted
    assert '<span class="nf">answer</span>' in highlighted
    assert highlighted == render_blocks(code + "```\n")[0]
    shown = html.unescape(strip_tags(highlighted))
    assert (
        shown == "def answer(question):\n    return '<b>42</b>'\n\n"
    )  # the code, then the block's end


@pytest.mark.parametrize(
    "fence",
    ["```\nplain = 1\n```", "```no-such-language\nplain = 1\n```", "    plain = 1"],
    ids=["no language", "unknown language", "indented"],
)
def test_code_in_no_language_pygments_knows_stays_plain(fence: str) -> None:
    rendered = render_markdown(fence)
    assert "<span" not in rendered and "plain = 1" in rendered


def strip_tags(markup: str) -> str:
    parser = Inspector()
    parser.feed(markup)
    return "".join(parser.text)


class Inspector(HTMLParser):
    """What a browser would build from HTML: every element and attribute, and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        self.text.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.text.append(f"&#{name};")


def unsafe(markup: str) -> list[str]:
    """What in ``markup`` the answer rules do not allow: a tag, an attribute, a class, a
    link's scheme."""
    parser = Inspector()
    parser.feed(markup)
    found = []
    for tag, attrs in parser.elements:
        if tag not in ALLOWED_TAGS:
            found.append(f"<{tag}>")
        for name, value in attrs:
            if name == "class":
                if not set((value or "").split()) <= ALLOWED_CLASSES.get(tag, set()):
                    found.append(f'<{tag} class="{value}">')
            elif name == "href":
                scheme = re.match(r"[a-z][a-z0-9+.-]*:", (value or "").lower())
                if scheme and scheme.group() not in ("http:", "https:", "mailto:"):
                    found.append(f'<{tag} href="{value}">')
            elif (tag, name) not in {("a", "rel"), ("a", "target")} and name not in (
                ALLOWED_ATTRIBUTES.get(tag, set())
            ):
                found.append(f"<{tag} {name}>")
    return found


@pytest.mark.parametrize(
    "payload", hostile_payloads("http://127.0.0.1:9"), ids=lambda payload: payload.name
)
def test_a_hostile_answer_is_safe_at_every_point_of_its_stream(payload) -> None:
    """The payload streamed one character at a time, so that a delta ends at every position
    of it, and in a code block, a list and a table: every block ever sent keeps to the
    finished answer's rules, and shows the payload's text, never its markup."""
    for text in (
        payload.text,
        f"Before\n\n{payload.text}\n\nAfter",
        f"- {payload.text}\n- two",
        f"```html\n{payload.text}\n```\nthen {payload.text}",
    ):
        renderer, updates, _ = stream([text[:end] for end in range(1, len(text) + 1)])
        sent = [block for update in updates for block in update.html]
        assert [found for block in sent for found in unsafe(block)] == []
        assert unsafe(render_markdown(text)) == []
    assert PWN not in "".join(unsafe(render_markdown(payload.text)))


def test_the_finished_answer_is_its_blocks() -> None:
    text = "# Title\n\nA *paragraph*.\n\n| a |\n|---|\n| b |\n"
    assert render_markdown(text) == "".join(render_blocks(text))
    assert len(render_blocks(text)) == 3
