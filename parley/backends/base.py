"""The contract every assistant backend fulfils: the request it is given, and the typed
events it yields back (docs/backends.md)."""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

from ..exceptions import BackendError

logger = logging.getLogger(__name__)

Role = Literal["system", "user", "assistant"]


# How many words of the previous answer a follow-up is searched with (see
# AssistantRequest.search_context): its start says what it was about.
FOLLOW_UP_ANSWER_WORDS = 30


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
    (higher is better; comparable only within one request), ``match`` how surely it is
    about the question, from 0 to 1: the larger of the share of the question's words it
    holds and the similarity of their meanings; ``focus``, for a passage that holds none of the
    question's words, the part of its text closest to the question in meaning (""
    otherwise, and without embeddings): what the offline assistant quotes of it.
    """

    title: str
    text: str
    url: str = ""
    document: str = ""
    score: float = 0.0
    match: float = 1.0
    focus: str = ""


@dataclass(frozen=True, slots=True)
class SearchContext:
    """The asker's previous ``question`` and the start of its ``answer``: what a follow-up
    is searched in the light of (``AssistantRequest.search_context``)."""

    question: str = ""
    answer: str = ""

    @property
    def words(self) -> str:
        return f"{self.question} {self.answer}".strip()


@dataclass(frozen=True, slots=True)
class About:
    """What the site says it is: the start of the document the owner names as its
    introduction (``KNOWLEDGE["ABOUT"]``), and the titles of the documents the knowledge
    holds: what the offline assistant answers "what is this?" with."""

    title: str
    url: str
    text: str
    documents: list[str]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: its ``name``, what it does (``description``), and the
    JSON Schema of its arguments (``parameters``), as the OpenAI API describes a function."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for a tool to be run. ``arguments`` is the JSON text the model wrote,
    unparsed (a model may write invalid JSON); ``id`` the model's id for the call, which
    its result is given back under."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolRound:
    """One round of tool calls in an answer, for the next request: the text the model
    wrote before asking (``text``), its ``calls``, and each call's result, in their order
    (``results``, what the model is told: the tool's output, or why it did not run)."""

    text: str
    calls: tuple[ToolCall, ...]
    results: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AssistantRequest:
    """What a backend is asked: the room's recent conversation, oldest first, ending with the
    question, plus who asked and where.

    ``passages`` are the knowledge passages retrieved for the question that the asker (and,
    in a shared room, every member) may read, best first; empty when nothing matched well
    enough (or no knowledge is indexed). ``withheld`` is true when passages that matched
    were left out because not every member of the room may read them: the answer must say
    so (:data:`parley.backends.prompt.WITHHELD_NOTE`), and tell nothing else about them.
    ``about`` is the site's introduction, if it has one that they may all read.

    ``tools`` are the tools the model is shown, ``tool_choice`` whether it may call them
    (``"none"``: it must answer in text, as when its answer has used up its rounds of
    calls), ``rounds`` the calls it made earlier in this answer, with their results: a
    backend sends them after the turns, and its model goes on from there.
    """

    turns: list[Turn]
    room: str = ""
    user: str = ""
    passages: tuple[Passage, ...] = ()
    withheld: bool = False
    about: About | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: Literal["auto", "none"] = "auto"
    rounds: tuple[ToolRound, ...] = ()

    @property
    def question(self) -> str:
        for turn in reversed(self.turns):
            if turn.role == "user":
                return turn.content
        return ""

    @property
    def search_context(self) -> SearchContext:
        """What the question is searched in the light of: the asker's previous question and
        the start of its answer, if the conversation has them (empty otherwise). A
        follow-up ("and how do I run several of them behind it?") means little alone. Only
        the asker's own turns: another member's words are not searched with the asker's
        rights."""
        users = [i for i, turn in enumerate(self.turns) if turn.role == "user"]
        author = self.turns[users[-1]].author if users else ""
        before = [i for i in users[:-1] if self.turns[i].author == author]
        if not before:
            return SearchContext()
        previous = before[-1]
        # Its own answer only: the turn right after it (none if it failed, or was not
        # answered; then not another member's).
        following = self.turns[previous + 1] if previous + 1 < len(self.turns) else None
        answer = following.content if following and following.role == "assistant" else ""
        start = " ".join(answer.split()[:FOLLOW_UP_ANSWER_WORDS])
        return SearchContext(question=self.turns[previous].content, answer=start)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the answer's text; the pieces, in order, join to the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens the model read (the prompt) and wrote (the answer), as the model or its
    server counted them. A backend yields it only when they are counted: never an estimate."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Finish:
    """The answer is whole: the last event of a stream, yielded once. ``reason`` is why the
    model stopped, in the OpenAI API's words: ``"stop"`` (it ended its answer), ``"length"``
    (it reached its token limit), ``"content_filter"``, ``"tool_calls"``. A stream that is
    closed early or raises yields none: the runner records ``"cancelled"`` or ``"error"``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Model:
    """The model that is answering, as its server named it (``"gpt-4o-mini-2024-07-18"``
    for ``gpt-4o-mini``): it replaces :attr:`AssistantBackend.model_name` on the answer."""

    name: str


BackendEvent: TypeAlias = TextDelta | ToolCall | Usage | Model | Finish

EVENT_TYPES = (TextDelta, ToolCall, Usage, Model, Finish)

# Backend classes already warned that they yield bare strings: once per class is enough.
_legacy_warned: set[type] = set()


def backend_event(item: object, *, backend: AssistantBackend) -> BackendEvent:
    """``item``, as ``backend.stream`` yielded it, as an event.

    A bare ``str`` is the contract before events: it is taken as a :class:`TextDelta`, and
    a warning names the backend class, once per class. Anything else raises
    :class:`BackendError`, with a plain sentence for the room and, for the log, the backend
    class and the type it yielded.
    """
    if isinstance(item, EVENT_TYPES):
        return item
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if isinstance(item, str):
        if type(backend) not in _legacy_warned:
            _legacy_warned.add(type(backend))
            logger.warning(
                "%s.stream yields bare str pieces, a deprecated form: yield "
                "parley.backends.TextDelta(text) and a Finish (docs/backends.md)",
                name,
            )
        return TextDelta(item)
    raise BackendError(
        "The assistant failed unexpectedly.",
        detail=f"{name}.stream yielded a {type(item).__qualname__}, which is no backend "
        "event: it may yield TextDelta, ToolCall, Usage, Model and Finish (docs/backends.md).",
    )


class AssistantBackend(abc.ABC):
    """An assistant: one async streaming method, configured by keyword options.

    Instances are shared by every room of a process (one per alias), so ``stream`` must keep
    no per-answer state on ``self``.
    """

    # Whether the backend's model is shown the request's tools and may call them (yield
    # ToolCall): a check warns of tools given to a backend that cannot (docs/tools.md).
    calls_tools: ClassVar[bool] = False
    # Who serves the model, as OpenTelemetry's GenAI conventions name it
    # (gen_ai.provider.name): the metrics' label (parley/metrics).
    provider_name: ClassVar[str] = "parley"
    # Whether its answers read and write tokens: False for a backend with no model (the
    # offline assistant), whose answers are recorded as free, never estimated
    # (parley/usage/metering.py).
    uses_tokens: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        self.options = options

    @property
    def model_name(self) -> str:
        """What each answer is labelled with: the model's name, or the backend's if it has
        no model. The class name unless a backend says better."""
        return type(self).__name__

    @abc.abstractmethod
    def stream(self, request: AssistantRequest) -> AsyncIterator[BackendEvent]:
        """Yield the answer as events, as it is produced: :class:`TextDelta` pieces of its
        text, in order; :class:`ToolCall`, :class:`Usage` and :class:`Model` when the model
        or its server reports them;
        then one :class:`Finish`, last. (A bare ``str`` is still taken as a text delta, with
        a warning: see :func:`backend_event`.)

        Raise :class:`parley.exceptions.BackendError` with a message fit for users when the
        answer cannot be produced. When the consumer of the iterator is cancelled (a member
        pressed stop), the generator is closed: it must release any upstream request at once,
        so that nothing more is generated.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release clients and connections held by the backend."""
