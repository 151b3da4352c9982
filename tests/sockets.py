"""Room sockets against a real server, as the security and access tests open them: refused
sockets, and a long answer streaming while something is tried against it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

import websockets
from asgiref.sync import sync_to_async

from parley.models import Message, Room
from tests.servers import Peer, Server

# Each piece waits 10 ms: this answer streams for 5 s at the very least, so everything a test
# tries against it happens while it is streaming (and the test checks that it still is).
LONG_REPLY = "tok "
LONG_REPEAT = 500
LONG_ANSWER = {
    "PARLEY_TEST_BACKEND": json.dumps(
        {
            "BACKEND": "parley.backends.scripted.ScriptedBackend",
            "OPTIONS": {"reply": LONG_REPLY, "repeat": LONG_REPEAT, "delay": 0.01},
        }
    )
}


def room_path(room: Room | str) -> str:
    return f"/ws/rooms/{room.public_id if isinstance(room, Room) else room}/"


async def refused_socket(
    server: Server, path: str, headers: dict[str, str], *, then_send: Sequence[dict[str, Any]] = ()
) -> tuple[list[dict[str, Any]], int | None]:
    """Open a socket, send ``then_send`` at once, and read until the server closes it:
    ``(every frame received, close code)``."""
    frames: list[dict[str, Any]] = []
    async with websockets.connect(server.ws_url + path, additional_headers=headers) as ws:
        # The server may close while these go out; what it sent before is still read below.
        with contextlib.suppress(websockets.ConnectionClosed):
            for frame in then_send:
                await ws.send(json.dumps(frame))
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in ws:
                frames.append(json.loads(text))
        return frames, ws.close_code


def only_error(frames: list[dict[str, Any]], code: str) -> None:
    """The refused socket got exactly one frame, the error: nothing of the room."""
    assert [f["type"] for f in frames] == ["error"], frames
    assert frames[0]["code"] == code


async def long_answer_streaming(server: Server, room: Room, user: Any) -> tuple[Peer, dict]:
    """``user`` in ``room`` has asked; the long answer has started. Returns the peer and the
    answer's announcement."""
    peer = await Peer.connect(server, room, user)
    await peer.send(type="send", client_id="q1", text="a long one, please")
    answer = await peer.answer_started()
    await peer.expect(lambda f: f["type"] == "delta")
    return peer, answer


async def still_streaming_then_complete(peer: Peer, answer: dict) -> None:
    """The answer was not stopped by anything that happened so far, and completes."""
    assert not any(f["type"] == "done" for f in peer.frames), "the answer ended early"
    stored = await sync_to_async(Message.objects.get)(pk=answer["id"])
    assert stored.status == Message.Status.STREAMING
    done = await peer.expect(lambda f: f["type"] == "done", timeout=60)
    assert done["message"]["id"] == answer["id"]
    assert done["message"]["status"] == "complete"
    assert done["message"]["text"] == LONG_REPLY * LONG_REPEAT
