"""Reading a search and cutting a snippet: pure text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.search.text import (
    MAX_TERMS,
    QueryTooLong,
    match_expression,
    search_terms,
    snippet,
)


def test_words_and_phrases_lower_cased_once_each():
    terms = search_terms('Ferry "Harbour  Master" ferry NEAR(x) a-b', max_chars=200)
    assert terms == [("ferry",), ("harbour", "master"), ("near", "x"), ("a", "b")]
    assert match_expression(terms) == '"ferry" "harbour master" "near x" "a b"'


def test_no_words_no_terms():
    assert search_terms(' " * - ( ) : ^ _ ', max_chars=200) == []


def test_terms_past_the_most_are_dropped_and_length_is_refused():
    assert len(search_terms(" ".join(f"w{n}" for n in range(40)), max_chars=200)) == MAX_TERMS
    with pytest.raises(QueryTooLong):
        search_terms("x" * 201, max_chars=200)


@given(st.text(max_size=200))
def test_any_input_gives_quoted_words_only(query):
    expression = match_expression(search_terms(query, max_chars=200))
    # Quotes only around phrases: nothing inside a term can end it or be syntax.
    for term in expression.split('" "') if expression else []:
        assert all(ch.isalnum() or ch == " " for ch in term.strip('"'))


def test_a_snippet_marks_matches_and_words_that_begin_with_them():
    parts = snippet("Running late: the runner runs.", [("run",)])
    assert [p.text for p in parts if p.marked] == ["Running", "runner", "runs"]
    assert "".join(p.text for p in parts) == "Running late: the runner runs."


def test_a_long_text_is_cut_around_the_first_match():
    text = " ".join(f"w{n}" for n in range(100)) + " target " + " ".join(["tail"] * 100)
    parts = snippet(text, [("target",)])
    joined = "".join(p.text for p in parts)
    assert joined.startswith("…") and joined.endswith("…") and "target" in joined
    assert len(joined) < 200


@given(st.text(max_size=300), st.text(max_size=30))
def test_a_snippet_is_the_text_it_came_from(text, query):
    joined = "".join(p.text for p in snippet(text, search_terms(query, max_chars=300)))
    assert joined.strip("…") in text or not text.strip()
