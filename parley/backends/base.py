"""The contract every assistant backend fulfils."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the conversation as the assistant sees it."""

    role: Role
    content: str
    author: str = ""


@dataclass(frozen=True, slots=True)
class Passage:
    """A passage of the site's own content that may answer the question (docs/knowledge.md).

    ``title`` is its heading path ("Doc › Section"), ``url`` where a reader finds it ("" if
    nowhere), ``document`` the key of the document it comes from, ``score`` its rank score
    (higher is better; comparable only within one request).
    """

    title: str
    text: str
    url: str = ""
    document: str = ""
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class AssistantRequest:
    """What a backend is asked: the room's recent conversation, oldest first, ending with the
    question, plus who asked and where.

    ``passages`` are the knowledge passages retrieved for the question that the asker (and,
    in a shared room, every member) may read, best first; empty when nothing matched well
    enough (or no knowledge is indexed). ``withheld`` is true when passages that matched
    were left out because not every member of the room may read them: the answer must say
    so (:data:`parley.backends.prompt.WITHHELD_NOTE`), and tell nothing else about them.
    """

    turns: list[Turn]
    room: str = ""
    user: str = ""
    passages: tuple[Passage, ...] = ()
    withheld: bool = False

    @property
    def question(self) -> str:
        for turn in reversed(self.turns):
            if turn.role == "user":
                return turn.content
        return ""


class AssistantBackend(abc.ABC):
    """An assistant: one async streaming method, configured by keyword options.

    Instances are shared by every room of a process (one per alias), so ``stream`` must keep
    no per-answer state on ``self``.
    """

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abc.abstractmethod
    def stream(self, request: AssistantRequest) -> AsyncIterator[str]:
        """Yield the answer as text pieces, in order, as they are produced.

        Raise :class:`parley.exceptions.BackendError` with a message fit for users when the
        answer cannot be produced. When the consumer of the iterator is cancelled (a member
        pressed stop), the generator is closed: it must release any upstream request at once,
        so that nothing more is generated.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release clients and connections held by the backend."""
