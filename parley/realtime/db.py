"""Reaching the ORM from async code.

Channels' ``database_sync_to_async`` costs about 120 µs a call on this project's machines,
half of it asgiref's bookkeeping around the hop itself: a wrapper object built per call, the
caller's context copied, then restored into it twice, a shielded future. Every posted message
makes one such hop before its acknowledgement (bench/README.md), so Parley's async code uses
:func:`database_call`, which makes the same hop, to the same thread, for about half of that.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.db import close_old_connections

from ..contrib.asgiref import in_own_sync_thread, sync_thread_executor
from ..contrib.orm import queries_unlogged

T = TypeVar("T")


async def database_call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run where ``database_sync_to_async`` would run it from an
    event loop: asgiref's one thread for sync code, so with the same database connection,
    and with the caller's context variables. As Channels does, database connections that
    are stale (``CONN_MAX_AGE``) or broken are closed before and after.

    Code that a sync caller runs through ``async_to_sync``, or that runs inside a Django
    request, has a thread of its own in asgiref's eyes: there this defers to
    ``database_sync_to_async``. Cancelling the await does not stop ``fn``; it runs to its end
    and its result is dropped.
    """
    if in_own_sync_thread():
        result: T = await database_sync_to_async(fn)(*args, **kwargs)  # channels: untyped
        return result
    call = functools.partial(_closing_stale_connections, fn, args, kwargs)
    return await asyncio.get_running_loop().run_in_executor(
        sync_thread_executor(), contextvars.copy_context().run, call
    )


# One thread of its own for knowledge searches: a search may rebuild the in-memory index
# first (hundreds of milliseconds for thousands of passages), which on the database thread
# would hold up every socket's message posts.
_knowledge_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-knowledge")


async def knowledge_call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run on Parley's knowledge thread, with the caller's context
    variables: a thread apart from :func:`database_call`'s, with a database connection of
    its own (closed around each call when stale, by ``CONN_MAX_AGE``, as there). For reads
    that may take long (:func:`parley.answers.records.answer_request`, whose search may rebuild the
    index), so that the database thread stays free. Cancelling the await does not stop
    ``fn``."""
    return await _thread_call(_knowledge_executor, fn, args, kwargs)


# Threads for the sync tools the assistant calls (parley.tools): the site's own code, which
# may take seconds, and must hold up neither the database thread nor the knowledge's.
_tools_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="parley-tools")


async def tools_call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run on one of the tools' threads, as :func:`knowledge_call`
    runs its calls: with the caller's context variables and a database connection of the
    thread's own. Cancelling the await does not stop ``fn``."""
    return await _thread_call(_tools_executor, fn, args, kwargs)


# One thread for exports of rooms (parley.rooms.export): a generator of a room's history
# is read a batch at a time, always on this thread, with its own database connection, so
# that a room of any size streams without holding up the database or the knowledge thread.
_export_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-export")


async def export_stream(chunks: Iterator[str], batch: int = 64) -> AsyncIterator[str]:
    """``chunks``, produced on the export thread ``batch`` at a time, as an async iterator
    for a streamed response."""
    while taken := await _thread_call(_export_executor, _take, (chunks, batch), {}):
        for chunk in taken:
            yield chunk


def _take(chunks: Iterator[str], count: int) -> list[str]:
    return list(itertools.islice(chunks, count))


async def _thread_call(
    executor: ThreadPoolExecutor, fn: Callable[..., T], args: Any, kwargs: Any
) -> T:
    call = functools.partial(_closing_stale_connections, fn, args, kwargs)
    return await asyncio.get_running_loop().run_in_executor(
        executor, contextvars.copy_context().run, call
    )


def _closing_stale_connections(fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    queries_unlogged()
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()
