from __future__ import annotations

import json

import pytest

from parley import protocol
from parley.exceptions import ProtocolError


def parse(frame: object, max_chars: int = 100) -> protocol.ClientFrame:
    raw = frame if isinstance(frame, str) else json.dumps(frame)
    return protocol.parse_client_frame(raw, max_chars=max_chars)


def test_send_frame_parses_with_defaults():
    assert parse({"type": "send", "client_id": "a-1", "text": "hi"}) == protocol.Send(
        client_id="a-1", text="hi", ask=True
    )
    assert parse({"type": "send", "client_id": "x", "text": "hi", "ask": False}).ask is False
    assert parse({"type": "send", "text": "no id"}).client_id == ""


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
        ({"type": "send", "client_id": "c", "text": "   \n"}, "empty_text"),
        ({"type": "send", "client_id": "c", "text": "x" * 101}, "text_too_long"),
        ({"type": "send", "client_id": "c", "text": "hi", "ask": "yes"}, "bad_frame"),
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


def test_refused_send_names_its_client_id():
    with pytest.raises(ProtocolError) as info:
        parse({"type": "send", "client_id": "c-9", "text": "x" * 101})
    assert info.value.code == "text_too_long" and info.value.client_id == "c-9"
