"""Running a coroutine eagerly, as Python 3.12's eager tasks do: this leans on asyncio's
private ``_asyncio_future_blocking`` protocol between a future and the task awaiting it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run_eagerly(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run ``coro`` up to its first suspension. ``None`` if it finished there (its result is
    dropped, its exception raised); otherwise a task that resumes it exactly where it stopped.

    Python 3.12's eager tasks do the same; this keeps 3.11 supported. A write to a socket
    that is not paused never suspends, so the common case costs no task at all. Only for
    coroutines that do not depend on which task runs them (an ASGI ``send`` does not; code
    using ``asyncio.timeout`` does, and must not be run this way).
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_resume(coro, waiting_on))


async def _resume(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    while True:
        try:
            if waiting_on is None:  # a bare yield: asyncio.sleep(0)
                await asyncio.sleep(0)
            else:
                # The coroutine yielded this future to a task, which would have taken it
                # over by clearing its blocking flag; awaiting it with the flag still set
                # raises "await wasn't used with future".
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except BaseException as exc:  # noqa: BLE001 - handed to the coroutine, as a Task does
            step: tuple[Callable[[Any], Any], Any] = coro.throw, exc
        else:
            step = coro.send, None
        try:
            waiting_on = step[0](step[1])
        except StopIteration as done:
            return done.value
