from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley import protocol
from parley.exceptions import ProtocolError
from tests.strategies import (
    CLIENT_ID,
    MAX_CHARS,
    client_ids,
    frame_dicts,
    json_ish,
    json_values,
    storable_text,
)


def parse(frame: object, max_chars: int = 100) -> protocol.ClientFrame:
    raw = frame if isinstance(frame, str) else json.dumps(frame)
    return protocol.parse_client_frame(raw, max_chars=max_chars)


def test_send_frame_parses_with_defaults():
    assert parse({"type": "send", "client_id": "a-1", "text": "hi"}) == protocol.Send(
        client_id="a-1", text="hi", ask=True
    )
    assert parse({"type": "send", "client_id": "x", "text": "hi", "ask": False}).ask is False
    assert parse({"type": "send", "text": "no id"}).client_id == ""
    assert parse({"type": "send", "text": "hi"}).edit_of is None


def test_an_edit_names_the_message_it_edits():
    assert parse({"type": "send", "client_id": "e", "text": "new", "edit_of": 41}) == (
        protocol.Send(client_id="e", text="new", edit_of=41)
    )


def test_cancel_and_resume_frames_parse():
    assert parse({"type": "cancel"}) == protocol.Cancel(message_id=None)
    assert parse({"type": "cancel", "message_id": 7}) == protocol.Cancel(message_id=7)
    assert parse({"type": "resume", "after": 12}) == protocol.Resume(after=12)
    assert parse({"type": "resume", "v": 1}) == protocol.Resume(after=0)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ("", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('"send"', "bad_frame"),
        ({"text": "no type"}, "bad_frame"),
        ({"type": 3}, "bad_frame"),
        ({"type": "shout"}, "unknown_type"),
        ({"type": "send", "client_id": "", "text": "hi"}, "bad_frame"),
        ({"type": "send"}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": 5}, "bad_frame"),
        ({"type": "send", "client_id": "", "text": "hi"}, "bad_frame"),
        ({"type": "send"}, "bad_frame"),
        ({"type": "send", "client_id": "has space", "text": "hi"}, "bad_frame"),
        ({"type": "send", "client_id": "x" * 65, "text": "hi"}, "bad_frame"),
        # Found by Hypothesis: "$" matched before a trailing newline, so these were accepted
        # (and 64 characters and a newline overflow the column on PostgreSQL).
        ({"type": "send", "client_id": "0\n", "text": "hi"}, "bad_frame"),
        ({"type": "send", "client_id": "x" * 64 + "\n", "text": "hi"}, "bad_frame"),
        # Found by Hypothesis: texts the database cannot store were accepted, and failed there.
        ({"type": "send", "client_id": "c", "text": "\ud800"}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": "a\udfffb"}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": "\x00"}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": "   \n"}, "empty_text"),
        ({"type": "send", "client_id": "c", "text": "x" * 101}, "text_too_long"),
        ({"type": "send", "client_id": "c", "text": "hi", "ask": "yes"}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": "hi", "edit_of": None}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": "hi", "edit_of": 0}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": "hi", "edit_of": "3"}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": "hi", "edit_of": True}, "bad_frame"),
        ({"type": "send", "client_id": "c", "text": "hi", "edit_of": 2**63}, "bad_frame"),
        ({"type": "cancel", "message_id": "7"}, "bad_frame"),
        ({"type": "cancel", "message_id": True}, "bad_frame"),
        ({"type": "resume", "after": -1}, "bad_frame"),
        ({"type": "resume", "after": True}, "bad_frame"),
        ({"type": "resume", "after": 1.5}, "bad_frame"),
        ({"type": "resume", "after": 2**64}, "bad_frame"),
        ({"type": "resume", "v": 2}, "unsupported_version"),
        ("[" * 100_000, "bad_json"),
    ],
)
def test_bad_frames_are_named(raw, code):
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert info.value.code == code
    assert info.value.detail


def test_unknown_type_is_quoted_short():
    with pytest.raises(ProtocolError) as info:
        parse({"type": "x" * 500})
    assert len(info.value.detail) < 200


def test_encode_is_compact_and_keeps_unicode():
    text = protocol.encode(protocol.delta(message_id=3, offset=10, text="héllo ✓"))
    assert text == '{"type":"delta","message_id":3,"offset":10,"text":"héllo ✓"}'


def test_error_frame_carries_extra_fields():
    assert protocol.error("busy", "later", client_id="c1") == {
        "type": "error",
        "code": "busy",
        "detail": "later",
        "client_id": "c1",
    }


def test_escaped_surrogate_pairs_are_one_character():
    """Only unpaired surrogates are refused: a pair escaped in JSON is a character like any."""
    assert parse('{"type": "send", "text": "\\ud83d\\ude00"}').text == "\U0001f600"


def test_refused_send_names_its_client_id():
    with pytest.raises(ProtocolError) as info:
        parse({"type": "send", "client_id": "c-9", "text": "x" * 101})
    assert info.value.code == "text_too_long" and info.value.client_id == "c-9"


# Hostile input, fuzzed -----------------------------------------------------------------------

CODES = {"bad_json", "bad_frame", "unknown_type", "unsupported_version", "empty_text"}
CODES.add("text_too_long")


def dumps(value: object, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def check_outcome(raw: str, max_chars: int = MAX_CHARS) -> protocol.ClientFrame | ProtocolError:
    """Parse ``raw``: a frame every field of which is valid, or a ProtocolError a client can
    be told about; any other exception fails the test."""
    try:
        frame = protocol.parse_client_frame(raw, max_chars=max_chars)
    except ProtocolError as exc:
        assert exc.code in CODES
        assert isinstance(exc.detail, str) and exc.detail.strip()
        assert exc.client_id == "" or CLIENT_ID.fullmatch(exc.client_id)
        # The error frame itself must be sendable: UTF-8, no lone surrogates echoed back.
        reply = protocol.error(exc.code, exc.detail, client_id=exc.client_id)
        protocol.encode(reply).encode("utf-8")
        assert len(exc.detail) < 300
        return exc
    if isinstance(frame, protocol.Send):
        assert frame.client_id == "" or CLIENT_ID.fullmatch(frame.client_id)
        assert isinstance(frame.text, str) and frame.text.strip()
        assert len(frame.text) <= max_chars
        # Storable: no NUL (PostgreSQL refuses it) and valid UTF-8 (no lone surrogates).
        assert "\x00" not in frame.text
        frame.text.encode("utf-8")
        assert frame.ask is True or frame.ask is False
    elif isinstance(frame, protocol.Cancel):
        assert frame.message_id is None or type(frame.message_id) is int
    else:
        assert isinstance(frame, protocol.Resume)
        assert type(frame.after) is int and 0 <= frame.after <= protocol.MAX_SEQ
    return frame


def violations(frame: object, max_chars: int = MAX_CHARS) -> set[str]:
    """The error codes docs/protocol.md allows for ``frame`` (empty: it is valid)."""
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return {"bad_frame"}
    found = set()
    version = frame.get("v", 1)
    if isinstance(version, bool) or version != 1:
        found.add("unsupported_version")
    kind = frame["type"]
    if kind not in {"send", "cancel", "resume"}:
        return found | {"unknown_type"}
    if kind == "send":
        client_id = frame.get("client_id", "absent")  # optional, but never null or ""
        if client_id != "absent" and not (
            isinstance(client_id, str) and CLIENT_ID.fullmatch(client_id)
        ):
            found.add("bad_frame")
        if not isinstance(frame.get("ask", True), bool):
            found.add("bad_frame")
        text = frame.get("text")
        if not isinstance(text, str) or "\x00" in text or re.search("[\ud800-\udfff]", text):
            found.add("bad_frame")
        elif not text.strip():
            found.add("empty_text")
        elif len(text) > max_chars:
            found.add("text_too_long")
    elif kind == "cancel":
        message_id = frame.get("message_id")
        if message_id is not None and type(message_id) is not int:
            found.add("bad_frame")
    else:
        after = frame.get("after", 0)
        if type(after) is not int or not 0 <= after <= protocol.MAX_SEQ:
            found.add("bad_frame")
    return found


@settings(max_examples=500)
@given(st.one_of(st.text(), json_ish))
def test_any_text_is_parsed_or_refused(raw):
    check_outcome(raw)


@settings(max_examples=500)
@given(json_values, st.booleans())
def test_any_json_value_is_parsed_or_refused(value, ascii_only):
    outcome = check_outcome(dumps(value, ascii_only))
    if not isinstance(value, dict):
        assert isinstance(outcome, ProtocolError) and outcome.code == "bad_frame"


@settings(max_examples=1000)
@given(frame_dicts, st.booleans())
def test_frames_are_accepted_exactly_when_valid(frame, ascii_only):
    """Wrong types, NaN, huge numbers, lone surrogates, extra or missing keys: a frame is
    parsed only when every field is valid, into exactly the values it carried."""
    raw = dumps(frame, ascii_only)
    try:
        wanted = violations(json.loads(raw))  # judged on what the server reads
    except ValueError:  # integers beyond Python's digit limit do not even parse
        wanted = {"bad_json"}
    outcome = check_outcome(raw)
    if not wanted:
        assert not isinstance(outcome, ProtocolError), outcome.detail
        expected = {
            "send": lambda: protocol.Send(
                client_id=frame.get("client_id") or "",
                text=frame["text"],
                ask=frame.get("ask", True),
            ),
            "cancel": lambda: protocol.Cancel(message_id=frame.get("message_id")),
            "resume": lambda: protocol.Resume(after=frame.get("after", 0)),
        }[frame["type"]]()
        assert outcome == expected
    else:
        assert isinstance(outcome, ProtocolError), f"accepted {outcome!r}"
        assert outcome.code in wanted


valid_frames = st.one_of(
    st.builds(
        protocol.Send,
        client_id=st.just("") | client_ids,
        text=storable_text.map(lambda t: t[:MAX_CHARS]).filter(str.strip),
        ask=st.booleans(),
        edit_of=st.none() | st.integers(1, protocol.MAX_SEQ),
    ),
    st.builds(protocol.Cancel, message_id=st.none() | st.integers(1, protocol.MAX_SEQ)),
    st.builds(protocol.Resume, after=st.integers(0, protocol.MAX_SEQ)),
)


def to_wire(frame: protocol.ClientFrame, *, explicit: bool) -> dict:
    """The client frame for ``frame``; ``explicit`` also spells out defaults and ``v``."""
    wire: dict = {"type": type(frame).__name__.lower()}
    if isinstance(frame, protocol.Send):
        wire["text"] = frame.text
        if frame.client_id:
            wire["client_id"] = frame.client_id
        if not frame.ask or explicit:
            wire["ask"] = frame.ask
        if frame.edit_of is not None:
            wire["edit_of"] = frame.edit_of
    elif isinstance(frame, protocol.Cancel):
        if frame.message_id is not None or explicit:
            wire["message_id"] = frame.message_id
    elif frame.after or explicit:
        wire["after"] = frame.after
    if explicit:
        wire["v"] = protocol.VERSION
    return wire


@settings(max_examples=500)
@given(valid_frames, st.booleans(), st.booleans())
def test_valid_frames_round_trip(frame, explicit, ascii_only):
    assert check_outcome(dumps(to_wire(frame, explicit=explicit), ascii_only)) == frame
