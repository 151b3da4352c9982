"""A deterministic backend for tests and demos: it streams a scripted reply."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..exceptions import BackendError
from .base import AssistantBackend, AssistantRequest, BackendEvent, Finish, TextDelta, Usage

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
        finish_reason: the reason of the closing :class:`Finish` (``"stop"``; ``"length"``
            plays a model that reached its token limit).
        usage: ``(prompt_tokens, completion_tokens)`` to report as :class:`Usage` before
            the finish (``None``: no usage, since the backend counts no tokens).
        pieces: ``"words"``, or ``"characters"`` to stream one character at a time.
    """

    def __init__(
        self,
        *,
        reply: str = "You said: {question}",
        repeat: int = 1,
        delay: float = 0.0,
        fail_after: int | None = None,
        error: str = "The scripted backend failed on purpose.",
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = None,
        pieces: str = "words",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.reply = reply
        self.repeat = repeat
        self.delay = delay
        self.fail_after = fail_after
        self.error = error
        self.finish_reason = finish_reason
        self.usage = Usage(*usage) if usage is not None else None
        if pieces not in ("words", "characters"):
            raise ValueError(f"pieces must be 'words' or 'characters', not {pieces!r}")
        self.split: Callable[[str], list[str]] = split_words if pieces == "words" else list

    @property
    def model_name(self) -> str:
        return "scripted"

    async def stream(self, request: AssistantRequest) -> AsyncIterator[BackendEvent]:
        text = self.reply.format(question=request.question, user=request.user, room=request.room)
        pieces = self.split(text) * self.repeat
        for index, piece in enumerate(pieces):
            if self.fail_after is not None and index >= self.fail_after:
                raise BackendError(self.error)
            if self.delay:
                await asyncio.sleep(self.delay)
            yield TextDelta(piece)
        if self.fail_after is not None and self.fail_after >= len(pieces):
            raise BackendError(self.error)
        if self.usage is not None:
            yield self.usage
        yield Finish(self.finish_reason)
