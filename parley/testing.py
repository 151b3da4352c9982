"""Public helpers for testing a project that uses Parley."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client

from .backends.scripted import ScriptedBackend

if TYPE_CHECKING:
    from django.contrib.auth.models import _User  # the site's AUTH_USER_MODEL

    from .models import Room

__all__ = ["AnswerText", "RoomClient", "ScriptedBackend", "session_cookie"]


def session_cookie(user: _User) -> str:
    """A real logged-in session for ``user``, as the value of a ``Cookie`` header."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class AnswerText:
    """A client's copy of a streaming answer, built from ``delta`` frames the way
    docs/protocol.md says: deltas that arrive ahead of a gap wait until it is filled; the
    blocks of HTML some carry replace those they follow."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.pending: dict[int, str] = {}
        self.html: list[str] = []  # the answer's blocks, as rendered at ``rendered`` characters
        self.rendered = 0

    def apply(self, offset: int, piece: str, blocks: dict[str, Any] | None = None) -> None:
        self.pending[offset] = piece
        while usable := sorted(o for o in self.pending if o <= len(self.text)):
            offset = usable[0]
            piece = self.pending.pop(offset)
            self.text = piece if offset == 0 else self.text + piece[len(self.text) - offset :]
        if blocks is not None:
            self.apply_blocks(blocks)

    def apply_blocks(self, blocks: dict[str, Any]) -> bool:
        """Take a delta's ``blocks`` if they follow what the copy has; whether they did."""
        if blocks["from"] == 0:
            if blocks["chars"] <= self.rendered:
                return False
        elif blocks["after"] != self.rendered or blocks["from"] > len(self.html):
            return False
        self.html = self.html[: blocks["from"]] + blocks["html"]
        self.rendered = blocks["chars"]
        return True


class RoomClient:
    """A :class:`WebsocketCommunicator` in a Parley room, through the project's real ASGI
    stack (Origin check, session auth), that keeps every frame it receives."""

    connected: bool  # whether the handshake was accepted
    subprotocol: str | int | None  # the accepted subprotocol, or the refusal's close code

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(
        cls,
        application: Any,
        room: Room,
        user: _User | None = None,
        *,
        origin: str | None = "http://127.0.0.1",
        host: str = "127.0.0.1",
        path: str | None = None,
    ) -> RoomClient:
        """Open the room's socket as a browser on ``host``'s page at ``origin`` would (the
        Origin must match the Host for the handshake to be accepted: parley.routing)."""
        headers = [(b"host", host.encode())]
        if user is not None:
            headers.append((b"cookie", (await sync_to_async(session_cookie)(user)).encode()))
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        # Not at import: the routes import the models, and this module is imported early.
        from .realtime.routing import socket_path

        communicator = WebsocketCommunicator(
            application, path or socket_path(room.public_id), headers=headers
        )
        client = cls(communicator)
        client.connected, client.subprotocol = await communicator.connect()
        return client

    async def send(self, **frame: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=data)

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.communicator.receive_from(timeout))
        self.frames.append(frame)
        return frame

    async def expect(self, type_: str, timeout: float = 5, **fields: Any) -> dict[str, Any]:
        """Receive until a frame of ``type_`` whose top-level ``fields`` match arrives."""
        for frame in self.frames:
            if frame["type"] == type_ and all(frame.get(k) == v for k, v in fields.items()):
                self.frames.remove(frame)
                return frame
        while True:
            frame = cast(
                "dict[str, Any]", json.loads(await self.communicator.receive_from(timeout))
            )
            if frame["type"] == type_ and all(frame.get(k) == v for k, v in fields.items()):
                return frame
            self.frames.append(frame)

    async def closed(self, timeout: float = 5) -> int:
        """Wait for the server to close the socket; returns the close code."""
        while True:
            output = await self.communicator.receive_output(timeout)
            if output["type"] == "websocket.close":
                code: int = output.get("code", 1000)
                return code
            if output["type"] == "websocket.send" and output.get("text"):
                self.frames.append(json.loads(output["text"]))

    async def disconnect(self) -> None:
        await self.communicator.disconnect()
