"""Serving Parley with uvicorn: ``uvicorn --ws parley.uvicorn:WebSocketProtocol ...``.

uvicorn's ``websockets-sansio`` protocol, with the same wire behaviour (it only subclasses it),
changed where an idle or stalled socket costs too much:

- Memory. Per connection it drops or shrinks what an open socket no longer needs: the
  handshake request (websockets ``Request`` with its ``Headers``, ~3.3 KiB) once the ASGI scope
  is built from it; the handshake response (~1.7 KiB) once it is sent; the ``asyncio.Queue``
  of receive events (three deques and an ``Event``, ~3.1 KiB) for a list created only while
  events wait; the ``asyncio.Event`` for write flow control (~0.85 KiB) for a flag that makes
  futures only while the transport is paused; per-connection copies of constant scope parts
  (``scope["asgi"]`` is one shared read-only mapping; short headers are shared tuples).
  bench/README.md has the measurements.
- Fan-out. A room's frame goes to each member as the same text: its WebSocket framing is
  done once for all of them (where no extension such as permessage-deflate is active),
  not once a member.
- Stalled clients. uvicorn waits until a client has read everything buffered for it before it
  even queues a close frame, and closing its transport waits for the buffer to drain: a client
  that stopped reading keeps the socket Parley closed (4008, ``MAX_BACKLOG``), with its
  buffers, for as long as it stays connected. Here it gets ``close_timeout`` seconds to read
  up to the close frame, then the connection is aborted.

- One client taking the server's memory or CPU (docs/security.md, "Bounded memory per
  client"). A connection is not read while its transport's write buffer is over the
  transport's high-water mark (a client that sends but does not read: each ping it sends
  queues a pong), nor while it is over its budget of received bytes
  (``RATE_LIMITS["BYTES"]``): it is read again once the buffer drains or the budget refills,
  so nothing is lost and a flood is only slowed to the budget. Ping and pong frames count
  against ``RATE_LIMITS["CONTROL"]``; past it the connection is closed with 1008 (policy
  violation). Once the socket is closing, pings are no longer answered.

``HttpToolsProtocol`` (``--http parley.uvicorn:HttpToolsProtocol``) is uvicorn's httptools
protocol with the limits its parser lacks: a request's line and headers may take at most
``MAX_HEADER_BYTES`` (431 and close) and must arrive within ``HEADER_TIMEOUT`` seconds of the
connection or of their first byte (close), so that neither endless headers nor a silent
connection are kept.

Limit: one task may wait in ``receive()`` at a time (ASGI apps have one reader; a second
concurrent ``receive()`` raises ``RuntimeError``, as websockets' own ``recv`` does).
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from ..conf import get_config
from ..throttling import make_bucket

_HEADERS: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
_HEADERS_MAX = 4096  # distinct short headers kept; past that, new ones are not shared
_HEADER_VALUE_MAX_LEN = 40  # cookies, tickets and tokens are longer and never repeat
_PER_CONNECTION = frozenset({b"sec-websocket-key"})  # short, but new on every connection


def _shared_header(header: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """One ``(name, value)`` tuple for every connection sending the same short header
    (``host``, ``origin``, ``upgrade``, ``user-agent``...), rather than a tuple each."""
    name, value = header
    if len(value) > _HEADER_VALUE_MAX_LEN or name in _PER_CONNECTION:
        return header
    found = _HEADERS.get(header)
    if found is not None:
        return found
    if len(_HEADERS) < _HEADERS_MAX:
        _HEADERS[header] = header
    return header


class _ReceiveQueue:
    """The part of ``asyncio.Queue`` uvicorn uses (``put_nowait``, ``get``, ``empty``),
    holding nothing while it is empty but the future of the one waiting reader."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("receive() is already being awaited by another task")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        return item


class _Flag:
    """The part of ``asyncio.Event`` uvicorn uses for write flow control; starts set, and
    allocates waiters only while it is clear (the transport paused writing)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        while not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if self._waiters is not None and waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` without the handshake objects after the handshake, with
    a lighter receive queue and write flag, and a bounded close (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Duck-typed stand-ins for the asyncio.Queue and asyncio.Event uvicorn declares.
        self.queue = _ReceiveQueue()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        limits = get_config().rate_limits
        self.received = make_bucket(limits["BYTES"])  # tokens are bytes
        self.controls = make_bucket(limits["CONTROL"])
        self.refill_timer: asyncio.TimerHandle | None = None  # set while over the budget
        self.failed = False  # closed by this protocol (1008), not by the app

    # Reading: paused while the app has a message to take (uvicorn's read_paused), while the
    # write buffer is over its high-water mark, and while over the budget of received bytes.

    def data_received(self, data: bytes) -> None:
        if self.received is not None:
            wait = self.received.spend(len(data))
            if wait and self.refill_timer is None:
                self.transport.pause_reading()
                self.refill_timer = self.loop.call_later(wait, self._refilled)
        super().data_received(data)

    def _refilled(self) -> None:
        self.refill_timer = None
        self._read_if_free()

    def _read_if_free(self) -> None:
        if not (
            self.read_paused
            or not self.writable.is_set()
            or self.refill_timer is not None
            or self.transport.is_closing()
        ):
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._read_if_free()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self._read_if_free()
        return message

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refill_timer is not None:
            self.refill_timer.cancel()
            self.refill_timer = None
        super().connection_lost(exc)

    # Control frames.

    def handle_ping(self) -> None:
        if self.close_sent:
            self.conn.data_to_send()  # the pong: a closing peer gets nothing but the close
            return
        if self._control_allowed():
            super().handle_ping()

    def handle_pong(self, event: Frame) -> None:
        if self._control_allowed():
            super().handle_pong(event)

    def _control_allowed(self) -> bool:
        if self.controls is None or self.controls.take():
            return True
        if not self.close_sent:
            self.failed = True
            self.conn.fail(CloseCode.POLICY_VIOLATION, "too many control frames")
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1008, "reason": ""})
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.transport.close()  # waits for the buffer to drain: bounded below
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
        return False

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope has what the app needs. websockets' parser generator keeps the request
        # for the connection's life (a local of ServerProtocol.parse): empty it in place.
        event.headers.clear()
        event.path = ""
        self.request = None  # type: ignore[assignment]  # uvicorn declares it always set
        scope = getattr(self, "scope", None)
        if scope is not None:  # an accepted upgrade: the app's task has not started yet
            scope["asgi"] = _shared_asgi(scope["asgi"])
            scope["headers"] = [_shared_header(header) for header in scope["headers"]]

    def start_keepalive(self) -> None:
        # Called right after the accepted handshake response is written: it is not needed
        # again (``send`` reads it only before the handshake completes).
        self.response = None  # type: ignore[assignment]  # uvicorn declares it always set
        super().start_keepalive()

    async def send(self, message: Any) -> None:
        if self.failed:
            raise ClientDisconnected  # as for a client that went: the app has been told
        text = message.get("text")
        if (
            text is not None
            and message["type"] == "websocket.send"
            and self.handshake_complete
            and not (self.close_sent or self.disconnected or self.conn.extensions)
            and self.conn.state is State.OPEN
            and not self.conn.expect_continuation_frame
            and self.writable.is_set()
        ):
            # What websockets would write for it (an unmasked, unfragmented text frame: no
            # extension is active), framed once for every member a frame is sent to.
            self.transport.write(_text_frame(text))
            return
        closing = message["type"] == "websocket.close" and self.handshake_complete
        if closing and not self.writable.is_set():
            try:
                await asyncio.wait_for(self.writable.wait(), self.close_timeout)
            except TimeoutError:
                self.transport.abort()  # the app hears websocket.disconnect
                return
        await super().send(message)
        if closing:
            # uvicorn resumes reading to hear the client's close; not past the limits above.
            self.transport.pause_reading()
            self._read_if_free()
        if closing and self.close_timer is not None:
            # uvicorn's timer would close the transport, which waits for the buffer to drain.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.transport.abort()  # nobody answered the ping: nothing buffered will be read


class HttpToolsProtocol(_HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on a request's header bytes and on the time
    they take to arrive (see the module docstring). Its WebSocket upgrades go to ``--ws``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = get_config()
        self.max_header_bytes = config.max_header_bytes
        self.header_timeout = config.header_timeout
        self.header_bytes: int | None = 0  # received since the request began; None: in its body
        self.header_timer: asyncio.TimerHandle | None = None

    # As uvicorn's own: asyncio declares a BaseTransport, its servers give a Transport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.header_bytes is None:  # in a request's body
            super().data_received(data)
            return
        if self.header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._start_header_timer()
        self.header_bytes += len(data)
        super().data_received(data)
        # Judged after the parser has seen the bytes: one read may hold a request's headers
        # and much of its body, and only headers that are still incomplete count. The parser
        # holds at most one read (256 KiB) past the limit before this refuses.
        if self.header_bytes is not None and self.header_bytes > self.max_header_bytes:
            self._refuse_headers()

    def on_headers_complete(self) -> None:
        self.header_bytes = None
        self._stop_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.header_bytes = 0  # what follows is the next request's (keep-alive, pipelining)

    def _start_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        self.logger.debug("Closing a connection whose request headers did not arrive in time.")
        self.transport.abort()

    def _refuse_headers(self) -> None:
        self._stop_header_timer()
        self.logger.warning("Request headers over %d bytes: refused.", self.max_header_bytes)
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: 0\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.close()


_last_frame: tuple[str | None, bytes] = (None, b"")  # holds the text: its id is not reused


def _text_frame(text: str) -> bytes:
    """The wire bytes of a text frame holding ``text``. The hub hands the same string to
    every member of a room in turn: framed once, for the first of them."""
    global _last_frame
    last_text, wire = _last_frame
    if text is not last_text:
        wire = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
        _last_frame = (text, wire)
    return wire


_ASGI: dict[tuple[str, str], MappingProxyType[str, str]] = {}


def _shared_asgi(asgi: dict[str, str]) -> MappingProxyType[str, str]:
    key = (asgi.get("version", ""), asgi.get("spec_version", ""))
    shared = _ASGI.get(key)
    if shared is None:
        shared = _ASGI[key] = MappingProxyType(dict(asgi))
    return shared
