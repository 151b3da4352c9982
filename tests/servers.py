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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets
from asgiref.sync import sync_to_async
from django.db import connection

from parley.serve import free_port, log_tail, server_start, server_stop, uvicorn_argv
from parley.testing import session_cookie

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"


def scripted_backend(reply: str = "tok ", repeat: int = 80, delay: float = 0.02) -> dict[str, str]:
    """Server environment for an assistant that says ``reply`` ``repeat`` times, a piece
    every ``delay`` seconds."""
    options = {"reply": reply, "repeat": repeat, "delay": delay}
    return {
        "PARLEY_TEST_BACKEND": json.dumps(
            {"BACKEND": "parley.backends.scripted.ScriptedBackend", "OPTIONS": options}
        )
    }


class Server:
    """``example.asgi:application`` served as ``make run`` serves it (parley.serve) on a free
    loopback port, using the test database."""

    def __init__(
        self, *, env: dict[str, str] | None = None, name: str = "server", args: tuple = ()
    ) -> None:
        self.port = free_port()
        self.name = name
        self.args = args  # more uvicorn options, after (and so over) Parley's
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
        argv = uvicorn_argv(
            "example.asgi:application", host="127.0.0.1", port=self.port, extra=self.args
        )
        self.proc = server_start(
            argv,
            port=self.port,
            log_path=self.log_path,
            env=self.env,
            cwd=ROOT,
            timeout=timeout,
            name=self.name,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        server_stop(self.proc, sig)

    def log(self) -> str:
        return log_tail(self.log_path)

    def ports_connected_to(self, port: int) -> list[int]:
        """The local ports of this server's TCP connections to ``port`` at the other end
        (a client's port, the database's), as the operating system sees them."""
        import psutil

        assert self.proc is not None
        return [
            c.laddr.port
            for c in psutil.Process(self.proc.pid).net_connections("tcp")
            if c.raddr and c.raddr.port == port
        ]


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


class StalledReader:
    """A real WebSocket client in a room that stops reading its socket, as a client on a
    frozen tab or a congested link does: nothing is read off the socket, so the kernel's
    buffers fill and the server's writes to it push back.

    Its receive buffer is made small before it connects, so that a few hundred kilobytes
    fill the path, and it sends no keepalive pings of its own (their unread replies would
    make it give up first).
    """

    RECEIVE_BUFFER = 4096

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, server: Server, room: Any, user: Any) -> StalledReader:
        cookie = await sync_to_async(session_cookie)(user)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cls.RECEIVE_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        ws = await websockets.connect(
            f"{server.ws_url}/ws/rooms/{room.public_id}/",
            additional_headers={"Cookie": cookie, "Origin": server.http_url},
            sock=sock,
            ping_interval=None,
            max_queue=None,
            compression=None,  # text must fill the buffers as it is, not deflated
        )
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        return cls(ws)

    @property
    def local_port(self) -> int:
        return self.ws.transport.get_extra_info("sockname")[1]

    def stop_reading(self) -> None:
        self.ws.transport.pause_reading()

    async def read_to_the_end(self) -> tuple[list[dict[str, Any]], int | None]:
        """Read again: every frame still on its way, and the close code the server sent."""
        self.ws.transport.resume_reading()
        frames = []
        try:
            async for text in self.ws:
                frames.append(json.loads(text))
        except websockets.ConnectionClosed:
            pass
        return frames, self.ws.close_code


async def server_status(server: Server, user: Any) -> dict[str, Any]:
    """The server's staff ``/status/`` page (its live rooms, sockets and backlogs) as seen by
    ``user``, who must be staff."""
    import aiohttp

    cookie = await sync_to_async(session_cookie)(user)
    async with (
        aiohttp.ClientSession(headers={"Cookie": cookie}) as http,
        http.get(f"{server.http_url}/status/") as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


class RedisServer:
    """A ``redis-server`` of the test's own on a free loopback port, which the test may stop
    and start again on the same port (the machine's shared Redis is never touched)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        OUTPUT.mkdir(exist_ok=True)
        self.log_path = OUTPUT / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--protected-mode", "yes",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Kill it, as a crash would (no persistence: everything in it is gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
