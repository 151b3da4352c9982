"""Assistant backends: one contract suite run against every backend, then each backend's own
behaviour, then how the events a backend yields are read (the legacy bare ``str`` among them).
The OpenAI backend talks real HTTP to the fake model server of ``tests/openai_server.py``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import sys
import warnings
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from parley.backends.base import (
    About,
    AssistantBackend,
    AssistantRequest,
    Finish,
    Model,
    Passage,
    TextDelta,
    ToolCall,
    ToolRound,
    ToolSpec,
    Usage,
    backend_event,
)
from parley.backends.offline import (
    INTRO,
    UNKNOWN,
    OfflineBackend,
    calculate,
    compose_answer,
    reply_kind,
)
from parley.backends.openai import OpenAIBackend
from parley.backends.prompt import WITHHELD_NOTE, WITHHELD_PROMPT, build_messages
from parley.backends.scripted import ScriptedBackend
from parley.exceptions import BackendError
from parley.rendering import render_markdown
from tests.backend_contract import (
    OLLAMA,
    QUESTION,
    SETTINGS,
    UNRELATED,
    BackendContract,
    ask,
    collect,
    collect_events,
    failure_of,
)
from tests.openai_server import FakeOpenAIServer, Script
from tests.servers import free_port

API_KEY = "sk-test-parley-0123456789abcdef"

LOOKUP = ToolSpec(
    name="lookup",
    description="Look up an order.",
    parameters={
        "type": "object",
        "properties": {"number": {"type": "integer"}},
        "required": ["number"],
    },
)

# Scripted --------------------------------------------------------------------------------


class TestScriptedBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> AssistantBackend:
        return ScriptedBackend()

    @pytest.fixture
    def slow_backend(self) -> AssistantBackend:
        return ScriptedBackend(repeat=50, delay=0.02)

    def expected(self, request: AssistantRequest) -> str:
        return f"You said: {request.question}"

    async def test_reply_template_fills_in_question_user_and_room(self):
        backend = ScriptedBackend(reply="{user} in {room} asked: {question}")
        answer = "".join(await collect(backend.stream(QUESTION)))
        assert answer == "alice in Team asked: What is 2 * (3 + 4)?"

    async def test_repeat_repeats_the_reply(self):
        backend = ScriptedBackend(reply="one two ", repeat=3)
        assert "".join(await collect(backend.stream(QUESTION))) == "one two one two one two "

    async def test_fail_after_raises_backend_error_after_that_many_pieces(self):
        backend = ScriptedBackend(reply="a b c d e", fail_after=2, error="Upstream fell over.")
        pieces, error = await failure_of(backend)
        assert pieces == ["a ", "b "]
        assert str(error) == "Upstream fell over."

    async def test_fail_after_the_last_piece_still_fails(self):
        pieces, _ = await failure_of(ScriptedBackend(reply="a b", fail_after=5))
        assert pieces == ["a ", "b"]

    async def test_scripted_usage_and_finish_reason_end_the_stream(self):
        backend = ScriptedBackend(reply="a b", usage=[12, 2], finish_reason="length")
        assert await collect_events(backend.stream(QUESTION)) == [
            TextDelta("a "),
            TextDelta("b"),
            Usage(prompt_tokens=12, completion_tokens=2),
            Finish("length"),
        ]


# Offline ---------------------------------------------------------------------------------


class TestOfflineBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> AssistantBackend:
        return OfflineBackend(delay=0)

    @pytest.fixture
    def slow_backend(self) -> AssistantBackend:
        return OfflineBackend(delay=0.05)

    def expected(self, request: AssistantRequest) -> str:
        return compose_answer(request)

    async def test_says_plainly_that_it_does_not_know_without_passages(self):
        answer = "".join(await collect(OfflineBackend(delay=0).stream(ask("Summarise our plan"))))
        assert answer.startswith(UNKNOWN)
        assert "offline assistant" in answer
        assert "no language model is connected" in answer
        assert "Sources" not in answer

    async def test_explains_how_to_connect_a_model_when_asked_about_models(self):
        answer = compose_answer(ask("Can you use a language model?"))
        assert answer.startswith(UNKNOWN)
        assert "PARLEY_BACKEND=openai" in answer

    async def test_quotes_what_answers_the_question_and_links_its_source(self):
        request = ask("How do I connect Ollama?", passages=(OLLAMA,))
        answer = "".join(await collect(OfflineBackend(delay=0).stream(request)))
        assert answer.startswith("From *Backends › Ollama* [1]:")
        # The sentence that answers and the code it introduces; not the rest of the passage.
        assert "To connect Ollama, start it and run:\n\n```sh\nPARLEY_BACKEND=openai" in answer
        assert "It is free" not in answer and "Pull a model first" not in answer
        assert answer.endswith(
            "**Sources**\n\n- \\[1\\] [Backends › Ollama](/knowledge/docs/backends.md#ollama)\n"
        )
        html = render_markdown(answer)
        assert '<a href="/knowledge/docs/backends.md#ollama"' in html
        assert "<pre><code" in html

    async def test_quotes_table_rows_under_their_header(self):
        answer = compose_answer(ask("What is OPENAI_BASE_URL?", passages=(SETTINGS,)))
        assert (
            "| variable | default | meaning |\n| --- | --- | --- |\n| `OPENAI_BASE_URL`" in answer
        )
        assert "REDIS_URL" not in answer and "`DEBUG`" not in answer
        assert "<table>" in render_markdown(answer)

    async def test_quotes_a_second_passage_only_if_it_adds_to_the_first(self):
        answer = compose_answer(
            ask("Which URL for Ollama's server?", passages=(OLLAMA, SETTINGS, UNRELATED))
        )
        assert "[1]" in answer and "From *Configuration › Variables* [2]:" in answer
        assert (
            "- \\[2\\] [Configuration › Variables](/knowledge/docs/configuration.md#variables)"
            in answer
        )
        assert "Deploying" not in answer  # holds no word of the question
        answer = compose_answer(ask("How do I connect Ollama?", passages=(OLLAMA, SETTINGS)))
        assert "Configuration" not in answer  # adds nothing the first quote lacks

    async def test_a_source_without_a_url_is_named_not_linked(self):
        passage = Passage(title="Notes [draft]", text="The ferry leaves at nine.")
        answer = compose_answer(ask("When does the ferry leave?", passages=(passage,)))
        assert answer.endswith("**Sources**\n\n- \\[1\\] Notes \\[draft\\]\n")

    async def test_does_arithmetic(self):
        answer = "".join(await collect(OfflineBackend(delay=0).stream(ask("2 * (3 + 4)"))))
        assert answer.startswith("2 * (3 + 4) = 14")

    async def test_greets_the_asker_by_name(self):
        answer = "".join(await collect(OfflineBackend(delay=0).stream(ask("hi there", user="bob"))))
        assert answer.startswith("Hello, bob!")

    @pytest.mark.parametrize(
        "text, kind, start",
        [
            ("hello!", "greet", "Hello, alice!"),
            ("Good morning, everyone", "greet", "Hello, alice!"),
            ("thanks, that helped a lot", "thank", "You're welcome!"),
            ("Thank you!", "thank", "You're welcome!"),
        ],
    )
    async def test_small_talk_is_answered_as_such_before_any_passage(self, text, kind, start):
        """ "hello" is not a question about the protocol's hello frame, whatever the
        search found for it."""
        hello_frame = replace(SETTINGS, title="Protocol › hello", text="Wait for hello.")
        request = ask(text, passages=(hello_frame,))
        assert reply_kind(request) == kind
        assert compose_answer(request).startswith(start)
        assert "Wait for hello" not in compose_answer(request)

    @pytest.mark.parametrize(
        "text",
        [
            "hi, how do I connect Ollama?",
            "thanks. now how do I connect Ollama",
            "thank you, but Ollama still fails to connect",
            "what can I do to connect Ollama?",
            "what do you know about Ollama?",
            "how do you help people connect Ollama",
        ],
    )
    async def test_a_question_with_small_talk_or_about_words_is_still_answered(self, text):
        request = ask(text, passages=(OLLAMA,))
        assert reply_kind(request) == "quote"
        assert compose_answer(request).startswith("From *Backends › Ollama* [1]:")

    @pytest.mark.parametrize(
        "text", ["what is this?", "What can you do", "who are you", "what is parley?", "help"]
    )
    async def test_what_it_is_is_answered_from_the_sites_introduction(self, text):
        about = About(
            title="Parley",
            url="/knowledge/README.md",
            text="# Parley\n\nReal-time chat with an AI assistant for Django sites.\n\n## Setup",
            documents=["Deploying", "Configuration"],
        )
        assert reply_kind(ask(text, passages=(SETTINGS,))) == "about"
        answer = compose_answer(replace(ask(text), about=about))
        assert answer.startswith(INTRO)
        assert (
            "From *Parley* [1]:\n\nReal-time chat with an AI assistant for Django sites." in answer
        )
        assert "The documents I answer from: *Deploying*, *Configuration*." in answer
        assert "[Parley](/knowledge/README.md)" in answer
        # Without an introduction configured: its own words, no made-up quote.
        assert compose_answer(ask(text)).startswith(INTRO) and "From *" not in compose_answer(
            ask(text)
        )

    async def test_sections_that_only_look_related_are_offered_not_quoted(self):
        """When the best passage is not a sure match, quoting it as the answer would be
        claiming it answers: the sections are listed as links instead."""
        unsure = (replace(OLLAMA, match=0.45), replace(SETTINGS, match=0.42))
        request = ask("which llama should I pick for my farm?", passages=unsure)
        assert reply_kind(request) == "related"
        answer = compose_answer(request)
        assert answer.startswith("I'm not sure which of the site's documents answers that")
        assert "- [Backends › Ollama](/knowledge/docs/backends.md#ollama)" in answer
        assert "From *" not in answer and "PARLEY_BACKEND" not in answer
        sure = ask("How do I connect Ollama?", passages=(replace(OLLAMA, match=0.8),))
        assert reply_kind(sure) == "quote"

    async def test_a_passage_found_by_meaning_alone_is_quoted_from_its_start(self):
        """No word of the question is in it (found by its embedding): its opening is
        quoted, not nothing."""
        request = ask("anything offline for my laptop?", passages=(replace(OLLAMA, match=0.7),))
        answer = compose_answer(request)
        assert answer.startswith(
            "From *Backends › Ollama* [1]:\n\nOllama runs models on your machine."
        )

    @pytest.mark.parametrize(
        "expression, result",
        [
            ("1 + 2 * 3", "7"),
            ("-(4 - 10) / 4", "1.5"),
            ("7 // 2 + 7 % 2", "4"),
            ("2 ** 10 =", "1024"),
        ],
    )
    def test_calculate(self, expression, result):
        assert calculate(expression) == f"{expression.rstrip('= ')} = {result}"

    @pytest.mark.parametrize(
        "text",
        [
            "__import__('os').system('touch /tmp/parley-pwned')",
            "__import__('os').getcwd()",
            "(1).__class__",
            "2 ** 100000",
            "9 ** 9 ** 9",
            "1 / 0",
            "what is 2 + 2",
            "()",
        ],
    )
    def test_calculate_refuses_anything_but_small_arithmetic(self, text):
        assert calculate(text) is None

    async def test_code_is_answered_as_a_question_not_run(self):
        request = ask("__import__('os').getcwd()")
        answer = "".join(await collect(OfflineBackend(delay=0).stream(request)))
        assert INTRO in answer
        assert answer.startswith(UNKNOWN)
        assert " = " not in answer


# OpenAI-compatible -----------------------------------------------------------------------


class TestOpenAIBackend(BackendContract):
    SLOW = Script(tokens=[f"word{i} " for i in range(200)], delay=0.05)
    reports_usage = True  # the fake server counts, as real ones do when asked

    @pytest.fixture
    async def make_backend(self, fake_openai):
        made: list[OpenAIBackend] = []

        def make(**options: Any) -> OpenAIBackend:
            options = {
                "base_url": fake_openai.base_url,
                "api_key": API_KEY,
                "model": "fake-model",
                "timeout": 10,
                **options,
            }
            backend = OpenAIBackend(**options)
            made.append(backend)
            return backend

        yield make
        for backend in made:
            await backend.aclose()

    @pytest.fixture
    def backend(self, make_backend) -> AssistantBackend:
        return make_backend()

    @pytest.fixture
    def slow_backend(self, make_backend, fake_openai) -> AssistantBackend:
        fake_openai.script = self.SLOW
        return make_backend()

    def expected(self, request: AssistantRequest) -> str:
        return Script().text

    # The request ---------------------------------------------------------------------------

    async def test_request_carries_model_system_prompt_named_turns_stream_and_key(
        self, make_backend, fake_openai
    ):
        backend = make_backend(model="llama3.2", system_prompt="You help the Team room.")
        await collect(backend.stream(QUESTION))
        exchange = fake_openai.last
        assert exchange.path == "/v1/chat/completions"
        assert exchange.headers["authorization"] == f"Bearer {API_KEY}"
        assert exchange.body["model"] == "llama3.2"
        assert exchange.body["stream"] is True
        assert exchange.body["stream_options"] == {"include_usage": True}
        assert exchange.body["messages"] == [
            {"role": "system", "content": "You help the Team room."},
            {"role": "user", "content": "bob: Shall we plan the trip?"},
            {"role": "assistant", "content": "Happy to help with the trip."},
            {"role": "user", "content": "alice: What is 2 * (3 + 4)?"},
        ]
        for unset in ("temperature", "max_tokens"):
            assert unset not in exchange.body

    async def test_default_system_prompt_explains_the_shared_room(self, make_backend, fake_openai):
        await collect(make_backend().stream(QUESTION))
        system = fake_openai.last.body["messages"][0]
        assert system["role"] == "system"
        assert "Parley" in system["content"]
        assert '"alice: ..."' in system["content"]

    async def test_sampling_options_and_extra_body_are_sent(self, make_backend, fake_openai):
        backend = make_backend(temperature=0.2, max_tokens=64, extra_body={"top_k": 20})
        await collect(backend.stream(QUESTION))
        body = fake_openai.last.body
        assert (body["temperature"], body["max_tokens"], body["top_k"]) == (0.2, 64, 20)

    async def test_without_a_key_a_placeholder_is_sent(
        self, make_backend, fake_openai, monkeypatch
    ):
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        await collect(make_backend(api_key=None).stream(QUESTION))
        assert fake_openai.last.headers["authorization"] == "Bearer not-needed"

    def test_build_messages_without_system_prompt(self):
        assert build_messages(ask("hi"), system_prompt="") == [
            {"role": "user", "content": "alice: hi"}
        ]

    async def test_passages_go_into_the_prompt_as_numbered_sources(self, make_backend, fake_openai):
        request = ask("Which URL for Ollama?", passages=(OLLAMA, SETTINGS))
        await collect(make_backend(system_prompt="You help.").stream(request))
        messages = fake_openai.last.body["messages"]
        assert [m["role"] for m in messages] == ["system", "user"]
        system = messages[0]["content"]
        assert system.startswith("You help.\n\nNumbered excerpts of this site's documents")
        assert "cite the ones you use by number, like [1]" in system
        assert f"[1] Backends › Ollama\n{OLLAMA.text}" in system
        assert f"[2] Configuration › Variables\n{SETTINGS.text}" in system
        assert messages[1] == {"role": "user", "content": "alice: Which URL for Ollama?"}

    async def test_an_answer_that_cites_no_source_lists_them_as_given_not_cited(
        self, make_backend, fake_openai
    ):
        request = ask("Which URL for Ollama?", passages=(OLLAMA, SETTINGS))
        pieces = await collect(make_backend().stream(request))
        assert "".join(pieces[:-1]) == Script().text
        assert pieces[-1] == (
            "\n\n**Sources given to the assistant** (none cited)\n\n"
            "- \\[1\\] [Backends › Ollama](/knowledge/docs/backends.md#ollama)\n"
            "- \\[2\\] [Configuration › Variables](/knowledge/docs/configuration.md#variables)\n"
        )

    async def test_an_answer_lists_only_the_sources_it_cites(self, make_backend, fake_openai):
        """Cited by number as the prompt asks ([2]); a link's text "[1](…)" or a number
        beyond the sources is no citation."""
        fake_openai.script = Script(
            tokens=["Use ", "the base URL [", "2]; see [1](https://x.test), [9] and `x[1]`."]
        )
        request = ask("Which URL for Ollama?", passages=(OLLAMA, SETTINGS))
        pieces = await collect(make_backend().stream(request))
        assert pieces[-1] == (
            "\n\n**Sources**\n\n"
            "- \\[2\\] [Configuration › Variables](/knowledge/docs/configuration.md#variables)\n"
        )
        # Shown as [2], the number the answer cites: an ordered list would renumber it 1.
        assert "<li>[2] <a href" in render_markdown(pieces[-1])

    async def test_the_model_is_named_as_the_server_names_it(self, make_backend, fake_openai):
        backend = make_backend(model="gpt-4o-mini")
        assert backend.model_name == "gpt-4o-mini"
        fake_openai.script = Script(model="gpt-4o-mini-2024-07-18")
        events = await collect_events(backend.stream(QUESTION))
        assert [e for e in events if isinstance(e, Model)] == [Model("gpt-4o-mini-2024-07-18")]
        assert isinstance(events[0], Model)

    async def test_withheld_passages_are_told_to_the_model_and_the_room(
        self, make_backend, fake_openai
    ):
        request = replace(ask("Which URL for Ollama?", passages=(OLLAMA,)), withheld=True)
        pieces = await collect(make_backend(system_prompt="You help.").stream(request))
        system = fake_openai.last.body["messages"][0]["content"]
        assert system.startswith(f"You help.\n\n{WITHHELD_PROMPT}\n\nNumbered excerpts")
        source = "- \\[1\\] [Backends › Ollama](/knowledge/docs/backends.md#ollama)\n"
        assert pieces[-1].endswith(f"{source}\n\n_{WITHHELD_NOTE}_\n")

    async def test_a_failed_answer_gets_no_sources(self, make_backend, fake_openai):
        fake_openai.script = Script(fail_after=2)
        pieces, _ = await failure_of(make_backend(), ask("Ollama?", passages=(OLLAMA,)))
        assert "Sources" not in "".join(pieces)

    def test_long_passages_are_cut_and_parts_of_one_section_are_one_source(self):
        first = Passage(title="Guide", url="/g", text="a " * 1000)
        second = Passage(title="Guide", url="/g", text="b b")
        [system, _] = build_messages(ask("q", passages=(first, second)), system_prompt="")
        assert system["content"].count("[1] Guide") == 1 and "[2]" not in system["content"]
        assert len(system["content"]) < 1800
        assert system["content"].endswith("…")

    # The answer ----------------------------------------------------------------------------

    async def test_skips_role_usage_and_empty_chunks(self, make_backend, fake_openai):
        fake_openai.script = Script(tokens=["Tea", "", " is", " ready."], usage=True)
        assert await collect(make_backend().stream(QUESTION)) == ["Tea", " is", " ready."]

    async def test_usage_and_finish_reason_come_from_the_server(self, make_backend, fake_openai):
        fake_openai.script = Script(tokens=["Cut", " short"], finish_reason="length")
        events = await collect_events(make_backend().stream(QUESTION))
        assert events == [
            Model("fake-model"),  # the server's name for it (the fake echoes the request's)
            TextDelta("Cut"),
            TextDelta(" short"),
            Usage(prompt_tokens=10, completion_tokens=2),  # as tests/openai_server.py counts
            Finish("length"),
        ]

    async def test_usage_sent_with_the_finishing_chunk_is_read(self, make_backend, fake_openai):
        # llama.cpp's server puts it there, whether asked or not.
        fake_openai.script = Script(usage_with_finish=True)
        events = await collect_events(make_backend(include_usage=False).stream(QUESTION))
        assert "stream_options" not in fake_openai.last.body
        assert events[-2:] == [Usage(10, len(Script().tokens)), Finish("stop")]

    async def test_without_include_usage_nothing_is_asked_or_made_up(
        self, make_backend, fake_openai
    ):
        events = await collect_events(make_backend(include_usage=False).stream(QUESTION))
        assert "stream_options" not in fake_openai.last.body
        assert not any(isinstance(event, Usage) for event in events)
        assert events[-1] == Finish("stop")

    async def test_a_server_that_refuses_stream_options_is_asked_again_without_them(
        self, make_backend, fake_openai, caplog
    ):
        fake_openai.script = Script(refuse_stream_options=True)
        backend = make_backend()
        first = await collect(backend.stream(QUESTION))
        assert "".join(first) == "".join(Script().tokens)
        refused, answered = fake_openai.exchanges[-2:]
        assert "stream_options" in refused.body and "stream_options" not in answered.body
        assert "refused stream_options" in caplog.text
        await collect(backend.stream(QUESTION))  # not asked for again: one request
        assert len(fake_openai.exchanges) == 3
        assert "stream_options" not in fake_openai.last.body

    async def test_a_server_that_gives_no_finish_reason_finishes_with_stop(
        self, make_backend, fake_openai
    ):
        fake_openai.script = Script(finish_reason=None)
        events = await collect_events(make_backend().stream(QUESTION))
        assert [event for event in events if isinstance(event, Finish)] == [Finish("stop")]

    async def test_the_sources_come_before_usage_and_finish(self, make_backend, fake_openai):
        events = await collect_events(make_backend().stream(ask("Ollama?", passages=(OLLAMA,))))
        assert isinstance(events[-3], TextDelta) and "**Sources given" in events[-3].text
        assert isinstance(events[-2], Usage) and events[-1] == Finish("stop")

    # Tools ---------------------------------------------------------------------------------

    async def test_tools_are_offered_in_the_openai_form(self, make_backend, fake_openai):
        await collect(make_backend().stream(replace(QUESTION, tools=(LOOKUP,))))
        assert fake_openai.last.body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Look up an order.",
                    "parameters": LOOKUP.parameters,
                },
            }
        ]
        assert "tool_choice" not in fake_openai.last.body  # "auto": the server's default

    async def test_no_tools_no_tools_field(self, make_backend, fake_openai):
        await collect(make_backend().stream(QUESTION))
        assert "tools" not in fake_openai.last.body

    async def test_a_request_that_may_call_none_says_so(self, make_backend, fake_openai):
        request = replace(QUESTION, tools=(LOOKUP,), tool_choice="none")
        await collect(make_backend().stream(request))
        assert fake_openai.last.body["tool_choice"] == "none"

    @pytest.mark.parametrize("whole", [False, True], ids=["in-pieces", "whole"])
    async def test_parallel_calls_are_put_together_from_their_pieces(
        self, make_backend, fake_openai, whole
    ):
        fake_openai.script = Script(
            tokens=["Let me", " look."],
            tool_calls=[("lookup", '{"number": 12, "note": "ü"}'), ("lookup", '{"number": 7}')],
            tool_call_piece=3,
            tool_calls_whole=whole,
        )
        events = await collect_events(
            make_backend().stream(replace(ask("Orders?", passages=(OLLAMA,)), tools=(LOOKUP,)))
        )
        calls = [event for event in events if isinstance(event, ToolCall)]
        assert [(call.name, call.arguments) for call in calls] == [
            ("lookup", '{"number": 12, "note": "ü"}'),
            ("lookup", '{"number": 7}'),
        ]
        assert len({call.id for call in calls}) == 2 and all(
            call.id.startswith("call_") for call in calls
        )
        # The text before the calls, and no sources: the answer goes on after the calls.
        assert [event.text for event in events if isinstance(event, TextDelta)] == [
            "Let me",
            " look.",
        ]
        assert events[-1] == Finish("tool_calls")

    async def test_the_rounds_so_far_go_back_in_the_openai_form(self, make_backend, fake_openai):
        call = ToolCall(id="call_1", name="lookup", arguments='{"number": 12}')
        done = ToolRound(text="Let me look.", calls=(call,), results=('{"status": "shipped"}',))
        silent = ToolRound(text="", calls=(replace(call, id="call_2"),), results=("Error: none",))
        await collect(
            make_backend().stream(replace(QUESTION, tools=(LOOKUP,), rounds=(done, silent)))
        )
        messages = fake_openai.last.body["messages"]
        assert messages[-4:] == [
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"number": 12}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"number": 12}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_2", "content": "Error: none"},
        ]

    async def test_unicode_survives(self, make_backend, fake_openai):
        fake_openai.script = Script(tokens=["Grüße", " 🎉", " 東京"])
        assert "".join(await collect(make_backend().stream(QUESTION))) == "Grüße 🎉 東京"

    def test_one_client_per_event_loop(self, fake_openai):
        # One instance serves several loops in turn (tests; a server restarting its loop):
        # a pooled connection of a finished loop must not be reused by the next.
        backend = OpenAIBackend(base_url=fake_openai.base_url, api_key=API_KEY)

        async def answer(*, close: bool) -> str:
            try:
                return "".join(await collect(backend.stream(QUESTION)))
            finally:
                if close:
                    await backend.aclose()

        assert asyncio.run(answer(close=False)) == Script().text  # as a test's loop ends
        assert asyncio.run(answer(close=True)) == Script().text
        assert len(fake_openai.exchanges) == 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()  # the first loop's connection died with its loop, unclosed

    # Stopping ------------------------------------------------------------------------------

    async def assert_upstream_stopped(self, fake: FakeOpenAIServer) -> None:
        """The server saw the client go away well before the end, and wrote nothing more."""
        exchange = await fake.client_went_away()
        assert exchange.tokens_sent < len(self.SLOW.tokens) // 2

    async def test_closing_the_stream_closes_the_upstream_response(self, slow_backend, fake_openai):
        stream = slow_backend.stream(QUESTION)
        assert await stream.__anext__() == Model("fake-model")
        assert await stream.__anext__() == TextDelta("word0 ")
        await stream.aclose()
        await self.assert_upstream_stopped(fake_openai)

    async def test_cancelling_the_consumer_closes_the_upstream_response(
        self, slow_backend, fake_openai
    ):
        received = asyncio.Event()

        async def consume() -> None:
            async for _ in slow_backend.stream(QUESTION):
                received.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(received.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.assert_upstream_stopped(fake_openai)

    async def test_cancelling_before_the_first_token_abandons_the_request(
        self, make_backend, fake_openai
    ):
        fake_openai.script = Script(hang=True)  # a model still loading
        task = asyncio.create_task(collect(make_backend().stream(QUESTION)))
        await fake_openai.wait_for(lambda: bool(fake_openai.exchanges))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        exchange = await fake_openai.client_went_away()
        assert exchange.tokens_sent == 0

    # Failures ------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "status, message, shown",
        [
            (500, "The model crashed while loading.", "The model crashed while loading."),
            (401, f"Incorrect API key provided: {API_KEY}.", "Check the API key"),
            (404, "The model `fake-model` does not exist.", "Check the model name"),
            (429, "Rate limit reached.", "try again later"),
        ],
    )
    async def test_http_errors_become_backend_errors_without_the_key(
        self, make_backend, fake_openai, status, message, shown
    ):
        fake_openai.script = Script(status=status, error={"message": message, "type": "error"})
        pieces, error = await failure_of(make_backend())
        assert pieces == []
        assert f"HTTP {status}" in error.detail
        assert shown in error.detail
        for text in (str(error), error.detail):
            assert API_KEY not in text
            assert API_KEY[:12] not in text
        assert str(error) in {
            "The assistant could not answer.",
            "The assistant is busy; try again later.",
        }

    async def test_long_server_messages_are_cut(self, make_backend, fake_openai):
        fake_openai.script = Script(status=500, error={"message": "x" * 5000})
        _, error = await failure_of(make_backend())
        assert "HTTP 500" in error.detail
        assert len(error.detail) < 400

    async def test_connection_refused_becomes_backend_error(self, make_backend):
        port = free_port()  # nothing listens there
        backend = make_backend(base_url=f"http://user:hunter2@127.0.0.1:{port}/v1")
        _, error = await failure_of(backend)
        assert f"Could not reach the model server at http://127.0.0.1:{port}/v1" in error.detail
        assert "hunter2" not in error.detail
        assert str(error) == "The assistant could not be reached."  # no address for users

    async def test_error_mid_stream_comes_after_the_earlier_tokens(self, make_backend, fake_openai):
        fake_openai.script = Script(
            fail_after=3, error={"message": "CUDA out of memory", "type": "server_error"}
        )
        pieces, error = await failure_of(make_backend())
        assert pieces == Script().tokens[:3]
        assert "reported an error while answering: CUDA out of memory" in error.detail
        assert str(error) == "The assistant failed while answering."

    async def test_a_connection_dropped_mid_stream_becomes_backend_error(
        self, make_backend, fake_openai
    ):
        fake_openai.script = Script(drop_after=2)
        pieces, error = await failure_of(make_backend())
        assert pieces == Script().tokens[:2]
        assert f"The connection to the model server at {fake_openai.base_url} broke off" in (
            error.detail
        )
        assert str(error) == "The assistant's answer was cut off."

    async def test_a_malformed_stream_becomes_backend_error(self, make_backend, fake_openai):
        fake_openai.script = Script(garbage_after=1)
        pieces, error = await failure_of(make_backend())
        assert pieces == Script().tokens[:1]
        assert "sent a malformed reply" in error.detail

    async def test_a_server_that_hangs_times_out(self, make_backend, fake_openai):
        fake_openai.script = Script(hang=True)
        _, error = await failure_of(make_backend(timeout=0.5))
        assert "did not answer within 0.5 seconds" in error.detail
        await fake_openai.wait_for(lambda: fake_openai.last.disconnected)

    async def test_a_stream_that_stalls_times_out(self, make_backend, fake_openai):
        fake_openai.script = Script(tokens=["Hello", " there", " ..."], delay=3)
        _, error = await failure_of(make_backend(timeout=0.5))
        assert "did not answer within 0.5 seconds" in error.detail

    def test_missing_openai_package_names_the_extra(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "openai", None)  # makes "import openai" fail
        monkeypatch.delitem(sys.modules, "parley.backends.openai")
        with pytest.raises(ImproperlyConfigured, match=r"pip install 'parley\[openai\]'") as info:
            importlib.import_module("parley.backends.openai")
        # An ImportError too: the backend handler and the system checks report it as such.
        assert isinstance(info.value, ImportError)


async def test_the_fake_model_server_speaks_the_wire_format(fake_openai):
    """The fake server, checked with the real client: whole answers and streamed chunks."""
    import openai

    messages = [{"role": "user", "content": "hi"}]
    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key=API_KEY) as client:
        whole = await client.chat.completions.create(model="m", messages=messages)
        stream = await client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert whole.object == "chat.completion"
    assert whole.choices[0].message.content == Script().text
    assert {(chunk.id, chunk.object, chunk.model) for chunk in chunks} == {
        (chunks[0].id, "chat.completion.chunk", "m")
    }
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [chunk.choices[0].delta.content for chunk in chunks[1:-2]]
    assert content == Script().tokens
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(Script().tokens)
    assert [exchange.finished for exchange in fake_openai.exchanges] == [True, True]


# Reading the events (parley.backends.base.backend_event, used by the answer runner) ----------


def legacy_backend_class() -> type[AssistantBackend]:
    """A backend written against the contract before events, yielding bare strings: a new
    class at each call, so that each test sees the class's first warning."""

    class LegacyBackend(AssistantBackend):
        async def stream(self, request: AssistantRequest) -> AsyncIterator[str]:  # type: ignore[override]
            yield "Hello"

    return LegacyBackend


@pytest.mark.parametrize(
    "event",
    [TextDelta("a"), ToolCall("call_1", "search", '{"q": "x"}'), Usage(1, 2), Finish("stop")],
    ids=["text", "tool-call", "usage", "finish"],
)
def test_events_are_taken_as_they_are(event):
    assert backend_event(event, backend=ScriptedBackend()) is event


def test_a_bare_str_is_a_text_delta_with_one_warning_per_backend_class(caplog):
    legacy, other = legacy_backend_class(), legacy_backend_class()
    with caplog.at_level(logging.WARNING, logger="parley.backends.base"):
        assert backend_event("Hello", backend=legacy()) == TextDelta("Hello")
        assert backend_event(" there", backend=legacy()) == TextDelta(" there")
        assert backend_event("", backend=legacy()) == TextDelta("")
        assert backend_event("Hi", backend=other()) == TextDelta("Hi")
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 2, warned  # once for each class, not once per piece
    name = f"{__name__}.legacy_backend_class.<locals>.LegacyBackend"
    assert warned[0].startswith(f"{name}.stream yields bare str pieces, a deprecated form")
    assert "TextDelta(text)" in warned[0]


@pytest.mark.parametrize(
    "item", [b"Hello", {"text": "Hello"}, None, 42], ids=["bytes", "dict", "none", "int"]
)
def test_anything_else_is_a_backend_error_naming_the_class_and_the_type(item):
    with pytest.raises(BackendError) as info:
        backend_event(item, backend=ScriptedBackend())
    assert str(info.value) == "The assistant failed unexpectedly."  # for the room
    assert info.value.detail.startswith(  # for the log
        f"parley.backends.scripted.ScriptedBackend.stream yielded a {type(item).__qualname__},"
    )
    assert "TextDelta, ToolCall, Usage, Model and Finish" in info.value.detail
