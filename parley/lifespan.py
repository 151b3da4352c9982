"""ASGI lifespan handling: at shutdown, running answers are closed as ``interrupted``; while
the server runs, it closes the answers of processes that died (:func:`answers.answers_watch`).

Route it in the project's ``ProtocolTypeRouter`` under ``"lifespan"``. Without it, answers
running when a server stops stay ``streaming`` until a member of their room resumes, asks or
cancels after the missing heartbeat (``PARLEY["ANSWER_STALE_AFTER"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from . import answers


async def lifespan_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    watch: asyncio.Task[None] | None = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            watch = asyncio.create_task(answers.answers_watch(), name="parley-answers-watch")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            await answers.answers_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
