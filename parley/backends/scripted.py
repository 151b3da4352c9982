"""A deterministic backend for tests and demos: it streams a scripted reply."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from ..exceptions import BackendError
from .base import AssistantBackend, AssistantRequest

_PIECES = re.compile(r"\S+\s*|\s+")


def split_words(text: str) -> list[str]:
    """Split text into word-sized pieces that join back to exactly ``text``."""
    return _PIECES.findall(text)


class ScriptedBackend(AssistantBackend):
    """Streams ``reply`` (``{question}``, ``{user}`` and ``{room}`` are filled in) word by word.

    Options:
        reply: the template of the answer (default echoes the question).
        repeat: how many times the reply is repeated (for long answers).
        delay: seconds to wait before each piece.
        fail_after: raise :class:`BackendError` after this many pieces (``None``: never).
        error: the message of that error.
    """

    def __init__(
        self,
        *,
        reply: str = "You said: {question}",
        repeat: int = 1,
        delay: float = 0.0,
        fail_after: int | None = None,
        error: str = "The scripted backend failed on purpose.",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.reply = reply
        self.repeat = repeat
        self.delay = delay
        self.fail_after = fail_after
        self.error = error

    async def stream(self, request: AssistantRequest) -> AsyncIterator[str]:
        text = self.reply.format(question=request.question, user=request.user, room=request.room)
        pieces = split_words(text) * self.repeat
        for index, piece in enumerate(pieces):
            if self.fail_after is not None and index >= self.fail_after:
                raise BackendError(self.error)
            if self.delay:
                await asyncio.sleep(self.delay)
            yield piece
        if self.fail_after is not None and self.fail_after >= len(pieces):
            raise BackendError(self.error)
