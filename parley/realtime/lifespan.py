"""ASGI lifespan handling: at startup, the process's hub reaches the channel layer (so the
first socket does not wait for it, and an unreachable layer is logged at once); while the
server runs, the answers of processes that died are closed (:func:`answers.answers_watch`)
and the rights of open sockets are re-checked (:func:`access.access_watch`); at shutdown,
running answers are closed as ``interrupted``.

Route it in the project's ``ProtocolTypeRouter`` under ``"lifespan"``. Without it, answers
running when a server stops stay ``streaming`` until a member of their room resumes, asks or
cancels after the missing heartbeat (``PARLEY["ANSWER_STALE_AFTER"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .. import answers
from ..exceptions import LayerUnavailable
from . import access
from .hub import get_hub

logger = logging.getLogger(__name__)


async def lifespan_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    watches: list[asyncio.Task[None]] = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await get_hub().start()
            except LayerUnavailable as exc:
                logger.warning("%s Sockets will try again as they join.", exc)
            watches = [
                asyncio.create_task(answers.answers_watch(), name="parley-answers-watch"),
                asyncio.create_task(access.access_watch(), name="parley-access-watch"),
            ]
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for watch in watches:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            await answers.answers_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
