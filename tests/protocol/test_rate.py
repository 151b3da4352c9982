"""The ``rate`` frame: one's feedback on an answer, given, changed or taken back."""

from __future__ import annotations

import json

import pytest

from parley import protocol
from parley.exceptions import ProtocolError


def parse(frame: dict) -> protocol.ClientFrame:
    return protocol.parse_client_frame(json.dumps(frame), max_chars=100)


def test_a_rating_parses_with_its_comment_trimmed():
    assert parse({"type": "rate", "message_id": 9, "rating": "down", "comment": " Wrong. "}) == (
        protocol.Rate(message_id=9, rating="down", comment="Wrong.")
    )
    assert parse({"type": "rate", "message_id": 9, "rating": "up"}).comment == ""


def test_a_null_rating_takes_the_feedback_back():
    assert parse({"type": "rate", "message_id": 9, "rating": None}) == protocol.Rate(
        message_id=9, rating=None
    )


def test_a_comment_of_the_limit_is_taken_and_one_more_character_is_refused():
    limit = protocol.MAX_COMMENT_CHARS
    taken = parse({"type": "rate", "message_id": 1, "rating": "up", "comment": "é" * limit})
    assert len(taken.comment) == limit
    with pytest.raises(ProtocolError) as info:
        parse({"type": "rate", "message_id": 1, "rating": "up", "comment": "é" * (limit + 1)})
    assert info.value.code == "comment_too_long"
    assert f"the limit is {limit}" in info.value.detail


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "rate", "rating": "up"},  # no answer
        {"type": "rate", "message_id": 0, "rating": "up"},
        {"type": "rate", "message_id": True, "rating": "up"},
        {"type": "rate", "message_id": 3},  # no rating: null must be said
        {"type": "rate", "message_id": 3, "rating": "meh"},
        {"type": "rate", "message_id": 3, "rating": 1},
        {"type": "rate", "message_id": 3, "rating": "up", "comment": 5},
        {"type": "rate", "message_id": 3, "rating": "up", "comment": "a\x00b"},
        {"type": "rate", "message_id": 3, "rating": None, "comment": "no rating"},
    ],
)
def test_bad_rate_frames_are_refused_as_bad_frames(frame):
    with pytest.raises(ProtocolError) as info:
        parse(frame)
    assert info.value.code == "bad_frame"
    assert info.value.detail


def test_the_reply_says_what_is_stored_now():
    given = {"rating": "up", "comment": ""}
    assert protocol.feedback(message_id=4, given=given) == {
        "type": "feedback", "message_id": 4, "feedback": given,
    }  # fmt: skip
    assert protocol.feedback(message_id=4, given=None)["feedback"] is None
