"""What every assistant backend promises (parley/backends/base.py), as one contract suite a
backend's tests subclass (tests/backends/test_backends.py, tests/backends/test_llamacpp.py),
with the requests and helpers they share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from parley.backends.base import (
    EVENT_TYPES,
    AssistantBackend,
    AssistantRequest,
    BackendEvent,
    Finish,
    Model,
    Passage,
    TextDelta,
    Turn,
    Usage,
)
from parley.exceptions import BackendError

QUESTION = AssistantRequest(
    turns=[
        Turn(role="user", content="Shall we plan the trip?", author="bob"),
        Turn(role="assistant", content="Happy to help with the trip."),
        Turn(role="user", content="What is 2 * (3 + 4)?", author="alice"),
    ],
    room="Team",
    user="alice",
)
OTHER_QUESTION = AssistantRequest(
    turns=[Turn(role="user", content="hello", author="bob")], room="Team", user="bob"
)


def ask(
    text: str, *, user: str = "alice", room: str = "Notes", passages: tuple[Passage, ...] = ()
) -> AssistantRequest:
    return AssistantRequest(
        turns=[Turn(role="user", content=text, author=user)],
        room=room,
        user=user,
        passages=passages,
    )


# Passages as retrieval gives them, best first.
OLLAMA = Passage(
    title="Backends › Ollama",
    url="/knowledge/docs/backends.md#ollama",
    document="files:docs/backends.md",
    score=6.0,
    text=(
        "## Ollama\n\nOllama runs models on your machine. It is free. To connect Ollama, "
        "start it and run:\n\n```sh\nPARLEY_BACKEND=openai "
        "OPENAI_BASE_URL=http://127.0.0.1:11434/v1 make run\n```\n\nPull a model first."
    ),
)
SETTINGS = Passage(
    title="Configuration › Variables",
    url="/knowledge/docs/configuration.md#variables",
    document="files:docs/configuration.md",
    score=5.0,
    text=(
        "| variable | default | meaning |\n| --- | --- | --- |\n"
        "| `DEBUG` | `true` | Django's DEBUG |\n"
        "| `OPENAI_BASE_URL` | unset | the server: Ollama `http://127.0.0.1:11434/v1` |\n"
        "| `REDIS_URL` | unset | the channel layer |"
    ),
)
UNRELATED = Passage(
    title="Deploying › Database",
    url="/knowledge/docs/deploying.md#database",
    score=4.9,
    text="PostgreSQL is the production database.",
)


async def collect_events(stream: AsyncIterator[BackendEvent]) -> list[BackendEvent]:
    return [event async for event in stream]


async def collect(stream: AsyncIterator[BackendEvent]) -> list[str]:
    """The text pieces of the stream's events, in order."""
    return [event.text for event in await collect_events(stream) if isinstance(event, TextDelta)]


async def failure_of(
    backend: AssistantBackend, request: AssistantRequest = QUESTION
) -> tuple[list[str], BackendError]:
    """The text pieces streamed before the backend failed, and its error (the test fails if
    it does not fail within 10 s)."""
    pieces: list[str] = []

    async def drain() -> None:
        async for event in backend.stream(request):
            if isinstance(event, TextDelta):
                pieces.append(event.text)

    with pytest.raises(BackendError) as info:
        await asyncio.wait_for(drain(), 10)
    return pieces, info.value


# The contract ----------------------------------------------------------------------------


class BackendContract:
    """What every backend promises (parley/backends/base.py). A subclass provides the
    ``backend`` fixture (answers at once), the ``slow_backend`` fixture (takes seconds to
    answer, piece by piece), :meth:`expected`, and says whether the fast backend reports
    token counts (``reports_usage``)."""

    reports_usage = False

    @pytest.fixture
    def backend(self) -> AssistantBackend:
        raise NotImplementedError

    @pytest.fixture
    def slow_backend(self) -> AssistantBackend:
        raise NotImplementedError

    def expected(self, request: AssistantRequest) -> str:
        """The whole answer the fast backend gives to ``request``."""
        raise NotImplementedError

    async def test_streams_non_empty_text_pieces_that_join_to_the_answer(self, backend):
        pieces = await collect(backend.stream(QUESTION))
        assert len(pieces) > 1, "the answer should stream in pieces"
        assert all(isinstance(piece, str) and piece for piece in pieces)
        assert "".join(pieces) == self.expected(QUESTION)

    async def test_yields_only_events_and_one_finish_last(self, backend):
        events = await collect_events(backend.stream(QUESTION))
        assert all(isinstance(event, EVENT_TYPES) for event in events), events
        assert [event for event in events if isinstance(event, Finish)] == [Finish("stop")]
        assert events[-1] == Finish("stop")
        texts = [event.text for event in events if isinstance(event, TextDelta)]
        assert all(isinstance(text, str) and text for text in texts)
        assert "".join(texts) == self.expected(QUESTION)

    async def test_usage_is_reported_only_when_counted_and_well_formed(self, backend):
        events = await collect_events(backend.stream(QUESTION))
        usages = [event for event in events if isinstance(event, Usage)]
        if not self.reports_usage:
            assert usages == []  # no estimate passed off as a count
            return
        [usage] = usages
        assert events.index(usage) > max(
            index for index, event in enumerate(events) if isinstance(event, TextDelta)
        )
        for count in (usage.prompt_tokens, usage.completion_tokens):
            assert isinstance(count, int) and not isinstance(count, bool) and count >= 0
        assert usage.completion_tokens > 0
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    async def test_shared_instance_answers_concurrent_requests_independently(self, backend):
        first, second = await asyncio.gather(
            collect(backend.stream(QUESTION)), collect(backend.stream(OTHER_QUESTION))
        )
        assert "".join(first) == self.expected(QUESTION)
        assert "".join(second) == self.expected(OTHER_QUESTION)

    async def test_closing_the_stream_early_ends_it(self, slow_backend):
        stream = slow_backend.stream(QUESTION)
        first = await stream.__anext__()
        while isinstance(first, Model):  # the model's name may come before any text
            first = await stream.__anext__()
        assert isinstance(first, TextDelta) and first.text
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()

    async def test_cancelling_the_consumer_propagates_and_is_not_an_error(self, slow_backend):
        started = asyncio.Event()
        events: list[BackendEvent] = []

        async def consume() -> None:
            async for event in slow_backend.stream(QUESTION):
                events.append(event)
                started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert events and not any(isinstance(event, Finish) for event in events)

    async def test_aclose_is_idempotent_and_the_backend_stays_usable(self, backend):
        await collect(backend.stream(QUESTION))
        await backend.aclose()
        await backend.aclose()
        assert "".join(await collect(backend.stream(QUESTION))) == self.expected(QUESTION)
