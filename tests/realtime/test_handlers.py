"""The registry of client frame handlers: one handler per frame type the protocol parses."""

from __future__ import annotations

from typing import get_args

import pytest

from parley import protocol
from parley.realtime import handlers


def test_every_client_frame_type_has_one_handler():
    kinds = {frame_class.type for frame_class in get_args(protocol.ClientFrame)}
    assert (
        set(handlers.HANDLERS)
        == kinds
        == {"send", "cancel", "resume", "withdraw", "regenerate", "decide", "rate"}
    )


def test_a_parsed_frame_finds_the_handler_of_its_type():
    frame = protocol.parse_client_frame('{"type": "cancel"}', max_chars=10)
    assert handlers.handler_for(frame).handle is handlers.handle_cancel


def test_a_second_handler_for_a_type_is_refused():
    with pytest.raises(ValueError, match="'send' frames already have a handler"):
        handlers.handles(protocol.Send)(handlers.handle_send)
