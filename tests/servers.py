"""Real servers for the tests: uvicorn subprocesses running the example project, and real
WebSocket clients talking to them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets
from asgiref.sync import sync_to_async
from django.db import connection

from parley.testing import session_cookie

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``uvicorn example.asgi:application`` on a free loopback port, using the test database."""

    def __init__(self, *, env: dict[str, str] | None = None, name: str = "server") -> None:
        self.port = free_port()
        self.name = name
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PARLEY_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        OUTPUT.mkdir(exist_ok=True)
        self.log_path = OUTPUT / f"{name}-{self.port}.log"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "example.asgi:application",
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
                    "--ws-max-size", "1048576", "--no-access-log",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class Peer:
    """A real WebSocket client in a room. A reader task keeps every frame it receives (so the
    socket never stalls on unread frames); :meth:`expect` takes them in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.taken: set[int] = set()
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self.frames.append(json.loads(text))
                self.arrived.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.arrived.set()

    @classmethod
    async def connect(cls, server: Server, room: Any, user: Any, **headers: str) -> Peer:
        cookie = await sync_to_async(session_cookie)(user)
        all_headers = {"Cookie": cookie, "Origin": server.http_url, **headers}
        ws = await websockets.connect(
            f"{server.ws_url}/ws/rooms/{room.public_id}/", additional_headers=all_headers
        )
        peer = cls(ws)
        await peer.expect(lambda f: f["type"] == "hello")
        return peer

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def expect(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Take the oldest frame not taken yet that matches ``predicate``, waiting for it."""
        deadline = asyncio.get_running_loop().time() + timeout
        checked = 0
        while True:
            for index in range(checked, len(self.frames)):
                if index not in self.taken and predicate(self.frames[index]):
                    self.taken.add(index)
                    return self.frames[index]
            checked = len(self.frames)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.reader.done():
                raise AssertionError(
                    f"no matching frame within {timeout}s; last: {self.frames[-3:]}"
                )
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    async def answer_started(self, *, not_id: int | None = None) -> dict[str, Any]:
        """The announcement of an assistant answer (other than message ``not_id``)."""
        frame = await self.expect(
            lambda f: (
                f["type"] == "message"
                and f["message"]["role"] == "assistant"
                and f["message"]["id"] != not_id
            )
        )
        return frame["message"]

    async def close(self) -> None:
        await self.ws.close()
        await self.reader

    def drop(self) -> None:
        """Cut the TCP connection with no closing handshake, as a network failure would."""
        self.ws.transport.abort()
