"""Group commit of posted messages: the posts that arrive together are stored in one
transaction, and each poster resumes once the transaction holding its row has committed.

Every post used to be a transaction and a hop to the database thread of its own, one after
another on that one thread: the commit and the hop cost more than the row. Here the first
post goes to the database at once; those that arrive while it is being written wait, and go
together in the next transaction, however many they are (up to ``MAX_BATCH``). A lone post
pays nothing for it; a busy server writes more rows per commit the busier it gets
(bench/README.md, "Workload").

What a poster does once its row is stored (the ``ack``, telling the room) runs in the batch's
order the moment the transaction has committed (``on_stored``), before anything else on the
event loop: had each poster resumed on its own, an answer opened on the database thread just
after the batch (it takes the room's next number) could have been announced first, and the
room would have seen number 563 before 562.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..contrib.eager import run_eagerly
from ..models import Message, Room
from ..rooms import services
from .db import database_call

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User

# Posts written in one transaction at most: bounds how long one commit holds the database
# (and the room rows it locks) while more wait.
MAX_BATCH = 256

Stored = Callable[[Message, bool], None]
Waiting = tuple[services.Post, Stored, "asyncio.Future[tuple[Message, bool]]"]


class PostQueue:
    """The posts of one event loop waiting for the database thread (see the module)."""

    def __init__(self) -> None:
        self._waiting: list[Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def post(
        self, *, room: Room, author: _User | None, text: str, client_id: str = "",
        version_of_id: int | None = None, on_stored: Stored,
    ) -> tuple[Message, bool]:  # fmt: skip
        """Store a message as :func:`parley.rooms.services.message_post` does; returns
        ``(message, created)`` once its row is committed, or raises what storing it raised.
        ``on_stored(message, created)`` is called first, synchronously, in the order of the
        batch's rows (see the module); what it raises is raised here."""
        done: asyncio.Future[tuple[Message, bool]] = asyncio.get_running_loop().create_future()
        post = services.Post(room, author, text, client_id, version_of_id)
        self._waiting.append((post, on_stored, done))
        if self._writer is None:
            # Eagerly: the first post is on its way to the database thread before this returns.
            self._writer = run_eagerly(self._write())
        return await done

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
                try:
                    results = await database_call(
                        services.messages_post, posts=[post for post, _, _ in batch]
                    )
                except Exception as exc:  # the transaction failed: none of its rows is stored
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, on_stored, done), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        if not done.done():
                            done.set_exception(result)
                        continue
                    try:
                        on_stored(*result)  # even if its poster went away: the room hears of it
                    except Exception as exc:  # a bug: its poster hears of it, the others go on
                        if not done.done():
                            done.set_exception(exc)
                        continue
                    if not done.done():
                        done.set_result(result)
        finally:
            self._writer = None


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PostQueue] = (
    weakref.WeakKeyDictionary()
)


def post_queue() -> PostQueue:
    """The post queue of the running event loop."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = PostQueue()
    return queue
