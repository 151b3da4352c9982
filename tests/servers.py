"""Real servers for the tests: uvicorn subprocesses running the example project, and real
WebSocket clients talking to them."""

from __future__ import annotations

import asyncio
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
from django.db import connection
from django.test import Client

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
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "example.asgi:application",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--ws-max-size", "1048576", "--no-access-log", "--lifespan", "off",
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


def session_cookie(user: Any) -> str:
    """A real session for ``user`` in the test database, as a Cookie header value."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class Peer:
    """A real WebSocket client in a room, keeping every frame it receives."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, server: Server, room: Any, user: Any, **headers: str) -> Peer:
        all_headers = {"Cookie": session_cookie(user), "Origin": server.http_url, **headers}
        ws = await websockets.connect(
            f"{server.ws_url}/ws/rooms/{room.public_id}/", additional_headers=all_headers
        )
        peer = cls(ws)
        await peer.expect(lambda f: f["type"] == "hello")
        return peer

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def expect(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first frame (already received or arriving) that matches ``predicate``."""
        for frame in self.frames:
            if predicate(frame):
                return frame
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout}s; got {self.frames[-5:]}")
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            self.frames.append(frame)
            if predicate(frame):
                return frame

    async def close(self) -> None:
        await self.ws.close()
