"""ASGI lifespan handling: at shutdown, running answers are closed as ``interrupted``.

Route it in the project's ``ProtocolTypeRouter`` under ``"lifespan"``. Without it, answers
running when a server stops stay ``streaming`` until another process notices the missing
heartbeat (``PARLEY["ANSWER_STALE_AFTER"]``).
"""

from __future__ import annotations

from typing import Any

from . import answers


async def lifespan_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await answers.answers_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
