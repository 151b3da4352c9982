"""One OpenTelemetry span per answer, as the GenAI conventions name a chat: read through the
SDK's in-memory exporter, as a site's collector would receive them."""

from __future__ import annotations

import builtins
import importlib
import json
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from parley.metrics import tracing

pytestmark = pytest.mark.django_db(transaction=True)

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans():
    """The spans ended during the test. The global provider can be set once per process:
    the first test sets it, to one that exports to ``_exporter``."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter.get_finished_spans


async def test_an_answer_is_one_client_span_of_its_room(spans, backend, asker, private_room):
    backend(reply="Noted: {question}", usage=(12, 3))
    await asker.send(type="send", client_id="c1", text="secret plans")
    done = await asker.expect("done", timeout=10)
    [span] = spans()
    assert span.name == "chat scripted" and span.kind == SpanKind.CLIENT
    attributes = dict(span.attributes)
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "parley",
        "gen_ai.request.model": "scripted",
        "gen_ai.conversation.id": private_room.public_id,
        "gen_ai.response.model": done["message"]["model"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
    }  # no message content unless the site opts in
    assert span.status.status_code == StatusCode.UNSET


async def test_content_is_recorded_only_when_the_site_opts_in(spans, backend, asker, settings):
    backend(reply="Noted: {question}")
    settings.PARLEY = {**settings.PARLEY, "TRACE_CONTENT": True}
    await asker.send(type="send", client_id="c1", text="secret plans")
    await asker.expect("done", timeout=10)
    [span] = spans()
    [asked] = json.loads(span.attributes["gen_ai.input.messages"])
    assert asked == {"role": "user", "parts": [{"type": "text", "content": "secret plans"}]}
    [answered] = json.loads(span.attributes["gen_ai.output.messages"])
    assert answered["parts"][0]["content"] == "Noted: secret plans"
    assert answered["finish_reason"] == "stop"


async def test_a_failed_answer_is_an_error_span(spans, backend, asker):
    backend(reply="half an answer", fail_after=1)
    await asker.send(type="send", client_id="c1", text="break")
    await asker.expect("done", timeout=10)
    [span] = spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "failed"


def test_without_the_extra_an_answer_span_does_nothing(monkeypatch):
    real_import = builtins.__import__

    def without_opentelemetry(name, *args, **kwargs):
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_opentelemetry)
    monkeypatch.delitem(sys.modules, tracing.__name__)
    bare = importlib.import_module(tracing.__name__)  # a module of its own, undone after
    assert bare is not tracing and bare.trace is None
    span = bare.AnswerSpan(conversation="r", provider="p", model="m", content=True)
    with span.current():
        span.asked("q")
    span.end(error="", finish_reason="stop", model="m", input_tokens=1, output_tokens=1, text="")
