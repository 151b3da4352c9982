"""Documents cut into passages: Markdown at its headings, text at its paragraphs."""

from __future__ import annotations

from parley.knowledge.chunking import (
    MAX_PASSAGE_CHARS,
    markdown_blocks,
    markdown_sections,
    text_sections,
)
from parley.rendering import heading_slug

from .conftest import BACKENDS


def test_a_markdown_section_is_a_passage_titled_with_its_heading_path():
    sections = markdown_sections(BACKENDS, title="fallback")
    assert [(s.title, s.anchor) for s in sections] == [
        ("Assistant backends", "assistant-backends"),
        ("Assistant backends › OpenAI-compatible servers", "openai-compatible-servers"),
        ("Assistant backends › The offline backend", "the-offline-backend"),
    ]
    assert sections[1].text.startswith("## OpenAI-compatible servers\n\nTo connect Ollama")
    # The sections put back together are the document.
    assert "\n\n".join(s.text for s in sections) == BACKENDS.strip()


def test_nested_headings_make_a_path_and_repeated_anchors_are_numbered():
    text = "# Guide\n\n## Setup\n\n### Linux\n\nA.\n\n## Usage\n\n### Linux\n\nB.\n"
    sections = markdown_sections(text, title="x")
    assert [(s.title, s.anchor) for s in sections[2:]] == [
        ("Guide › Setup › Linux", "linux"),
        ("Guide › Usage", "usage"),
        ("Guide › Usage › Linux", "linux-1"),
    ]


def test_text_before_the_first_heading_and_a_document_without_a_title():
    sections = markdown_sections("Intro line.\n\n## Part\n\nBody.\n", title="Release notes")
    assert [(s.title, s.anchor, s.text) for s in sections] == [
        ("Release notes", "", "Intro line."),
        ("Release notes › Part", "part", "## Part\n\nBody."),
    ]


def test_a_heading_in_a_code_block_is_not_a_heading():
    text = "# Doc\n\n```sh\n# a shell comment\nmake run\n```\n\n## Next\n\nText.\n"
    sections = markdown_sections(text, title="x")
    assert [s.title for s in sections] == ["Doc", "Doc › Next"]
    assert "# a shell comment" in sections[0].text


def test_a_long_section_is_cut_between_paragraphs_never_inside_code():
    paragraph = "word " * 100  # ~500 characters
    code = "```\n" + "line\n\nline\n" * 60 + "```"  # ~700 characters, blank lines inside
    text = "# Long\n\n" + "\n\n".join([paragraph] * 4 + [code] + [paragraph] * 4)
    sections = markdown_sections(text, title="x")
    assert len(sections) > 2
    assert {s.title for s in sections} == {"Long"}
    assert all(len(s.text) <= MAX_PASSAGE_CHARS + 800 for s in sections)
    # The code block is whole in one passage.
    assert [s.text.count("```") for s in sections].count(2) == 1
    assert sum(s.text.count("```") for s in sections) == 2


def test_plain_text_is_cut_into_paragraphs_under_the_given_title():
    sections = text_sections("One.\n\nTwo.\n", title="Notes")
    assert [(s.title, s.anchor, s.text) for s in sections] == [("Notes", "", "One.\n\nTwo.")]


def test_heading_slugs_are_githubs():
    assert heading_slug("Using a real model") == "using-a-real-model"
    assert heading_slug("Client → server") == "client--server"
    assert heading_slug("The `PARLEY` setting (any project)") == "the-parley-setting-any-project"


def test_a_code_block_stays_whole_even_holding_blank_lines_and_other_fences():
    lines = "Before.\n\n~~~md\n```sh\nmake run\n\n```\n~~~\n\nAfter.".splitlines()
    assert markdown_blocks(lines) == ["Before.", "~~~md\n```sh\nmake run\n\n```\n~~~", "After."]
