"""Hypothesis strategies for client frames, hostile and valid: shared by the parser's tests
(tests/protocol/test_protocol.py) and the live server's (tests/protocol/test_fuzz.py)."""

from __future__ import annotations

import operator
import re

from hypothesis import strategies as st

from parley import protocol

MAX_CHARS = 100
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

# Characters that break naive code: NUL, lone surrogates (valid in JSON escapes, not in
# UTF-8), BOM, noncharacters, line/paragraph separators, bidi overrides, combining marks, emoji.
odd_chars = st.sampled_from(
    ["\x00", "\n", "\x1b", "\x7f", "\ufeff", "\uffff", "\u2028", "\u202e", "\u0301"]
    + ["\U0001f600", "\U0010ffff", "\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00"]
)
with_odd_chars = st.builds(
    "{}{}{}".format, st.text(max_size=5), st.text(odd_chars, min_size=1, max_size=3), st.text()
)
odd_text = st.one_of(
    st.text(),
    with_odd_chars,
    st.sampled_from(["", " ", "\n\t", "\u3000", "\u200b", "c-1\n", "x" * (MAX_CHARS + 1)]),
    st.integers(MAX_CHARS - 2, MAX_CHARS + 2).map("é".__mul__),
    st.just(40_000).map("x".__mul__),  # (built when drawn: a short repr)
)
odd_numbers = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, protocol.MAX_SEQ, protocol.MAX_SEQ + 1, 10**300]),
    st.floats(),  # NaN and ±Infinity go out as the NaN/Infinity literals json accepts
    st.sampled_from([1.0, 0.0, -0.0, 1.5]),
)
scalars = st.one_of(st.none(), st.booleans(), odd_numbers, odd_text)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
client_ids = st.from_regex(CLIENT_ID, fullmatch=True)
FIELDS = ["client_id", "text", "ask", "message_id", "after", "v"]


def mostly(valid: st.SearchStrategy, *hostile: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` three times in four or so, so that frames with a single bad field are common
    (Hypothesis' ``one_of`` leans towards the branch with more to explore)."""
    return st.sampled_from([valid, valid, valid, st.one_of(*hostile)]).flatmap(lambda s: s)


field_values = {
    "client_id": mostly(
        client_ids, st.builds(operator.add, client_ids, odd_chars), odd_text, json_values
    ),
    "text": mostly(st.text(max_size=MAX_CHARS + 2), with_odd_chars, odd_text, scalars),
    "ask": mostly(st.booleans(), scalars),
    "message_id": mostly(st.none() | st.integers(0, protocol.MAX_SEQ), odd_numbers, json_values),
    "after": mostly(st.integers(0, protocol.MAX_SEQ), odd_numbers, json_values),
    "v": mostly(st.just(1), scalars),
}


def frame_dicts_of(
    kind: st.SearchStrategy, *optional: str, **required: st.SearchStrategy
) -> st.SearchStrategy[dict]:
    """Frames of ``kind`` with the ``required`` fields, any of the ``optional`` ones and maybe
    stray keys."""
    return st.builds(
        lambda kind, fields, extra: {**extra, "type": kind, **fields},
        kind,
        st.fixed_dictionaries(required, optional={name: field_values[name] for name in optional}),
        st.dictionaries(st.text(max_size=8).filter(lambda k: k not in FIELDS), scalars, max_size=2),
    )


frame_dicts = st.one_of(
    frame_dicts_of(st.just("send"), "client_id", "ask", "v", text=field_values["text"]),
    frame_dicts_of(st.just("cancel"), "message_id", "v"),
    frame_dicts_of(st.just("resume"), "after", "v"),
    frame_dicts_of(st.sampled_from(["send", "cancel", "resume"]), *FIELDS),
    frame_dicts_of(st.sampled_from(["Send", "send ", "hello", "ack", "error", ""]), *FIELDS),
    frame_dicts_of(scalars, *FIELDS),
)


json_ish = st.text(st.sampled_from('{}[]":,\\/ -+.0123456789eEtrufalsnNIiyu') | odd_chars)

storable_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1).filter(
    str.strip
)
