"""The write queue of one socket: frames written eagerly, in order, with a bounded backlog."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine
from typing import Any

from ..contrib.eager import run_eagerly


class Outbox:
    """An ordered write path: each item is written eagerly while the writes complete at once,
    and queued behind the one that did not (with one task to drain them) while it waits.

    ``on_overflow(backlog)`` is called when ``limit`` items are waiting, or when an item would
    take the bytes waiting (``size`` of each, the one being written included) past
    ``max_bytes``; it decides what to drop (and may :meth:`close` the outbox).
    ``on_error(exc)`` hears of failed writes.
    """

    def __init__(
        self,
        send: Callable[[Any], Coroutine[Any, Any, Any]],
        *,
        limit: int,
        on_overflow: Callable[[collections.deque[Any]], None],
        on_error: Callable[[Exception], None] = lambda exc: None,
        max_bytes: int | None = None,
        size: Callable[[Any], int] = lambda item: 0,
    ) -> None:
        self._send = send
        self._limit = limit
        self._max_bytes = max_bytes
        self._size = size
        self._bytes = 0  # of the items waiting, the one being written included
        self._on_overflow = on_overflow
        self._on_error = on_error
        # Created when a write first waits and dropped when the backlog drains: an empty
        # deque is 624 bytes, on every idle socket.
        self._backlog: collections.deque[Any] | None = None
        self._writer: asyncio.Task[Any] | None = None
        self.closed = False

    @property
    def backlogged(self) -> bool:
        """Whether a write is waiting (the other side pushes back)."""
        return self._writer is not None

    def put(self, item: Any) -> None:
        if self.closed:
            return
        if self._writer is not None:
            if self._backlog is None:
                self._backlog = collections.deque()
            size = self._size(item)
            if len(self._backlog) >= self._limit or (
                self._max_bytes is not None and self._bytes + size > self._max_bytes
            ):
                self._on_overflow(self._backlog)
                if self.closed:
                    return
            self._backlog.append(item)
            self._bytes += size
            return
        try:
            blocked = run_eagerly(self._send(item))
        except Exception as exc:
            self._on_error(exc)
            return
        if blocked is not None:
            self._bytes = self._size(item)
            self._writer = asyncio.ensure_future(self._drain(blocked, self._bytes))

    async def _drain(self, blocked: asyncio.Task[Any], size: int) -> None:
        try:
            try:
                await blocked
            except Exception as exc:
                self._on_error(exc)
            # An item counts until its write is done: its text is held until then.
            self._bytes -= size
            while self._backlog:
                item = self._backlog.popleft()
                try:
                    await self._send(item)
                except Exception as exc:
                    self._on_error(exc)
                self._bytes -= self._size(item)
        finally:
            self._writer = None
            self._backlog = None
            self._bytes = 0

    def finish(self, item: Any) -> None:
        """Put ``item`` (a ``websocket.close``) as the last item: it is written after every
        item put before it, and nothing put later is written. A close written past the queue
        would overtake the frames waiting in it (the error frame saying why it closes)."""
        self.put(item)
        self.closed = True  # the writer, if any, still drains what is queued

    def close(self) -> None:
        """Drop what waits and stop writing (the client is gone or does not read)."""
        self.closed = True
        self._backlog = None
        if self._writer is not None:
            self._writer.cancel()
