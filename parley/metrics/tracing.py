"""Traces of answers, with OpenTelemetry (the ``otel`` extra; docs/operations.md, "Traces").

One span per answer, as the GenAI semantic conventions describe a chat with a model: named
``chat {model}``, of kind ``CLIENT``, with the room as ``gen_ai.conversation.id``, the
tokens, the model that answered and why it stopped; the messages themselves only when the
site opts in (``TRACE_CONTENT``). An answer that pauses for an approval ends its span
there, and the process that goes on with it starts another of the same conversation.

Parley uses OpenTelemetry's API only, as instrumentation libraries do: the site sets up the
SDK and its exporter (``opentelemetry-instrument``, or a ``TracerProvider`` of its own).
Without them, or without the API installed, a span costs next to nothing. The span is the
current one while the answer runs, so the spans of an instrumented HTTP client (the
``openai`` backend's requests) are its children.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed: no spans
    trace = None  # type: ignore[assignment]


def _messages(role: str, texts: Sequence[str], **extra: Any) -> str:
    """Messages as the conventions' ``gen_ai.*.messages`` attributes hold them (JSON)."""
    return json.dumps(
        [{"role": role, "parts": [{"type": "text", "content": text}], **extra} for text in texts]
    )


class AnswerSpan:
    """The span of one answer, or of its part after an approval: started at once, ended
    by :meth:`end`. ``content``: whether to record the question and the answer's text."""

    def __init__(
        self, *, conversation: str, provider: str, model: str, content: bool = False
    ) -> None:
        self.content = content
        self._span = None
        if trace is not None:
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.conversation.id": conversation,
            }
            self._span = trace.get_tracer("parley").start_span(
                f"chat {model}", kind=trace.SpanKind.CLIENT, attributes=attributes
            )

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make the span the current one (and its tasks', which copy the context)."""
        if trace is None or self._span is None:
            yield
            return
        with trace.use_span(self._span, end_on_exit=False):
            yield

    def asked(self, question: str) -> None:
        """Record what the answer answers, if content is recorded."""
        if self._span is not None and self.content:
            self._span.set_attribute("gen_ai.input.messages", _messages("user", [question]))

    def end(
        self,
        *,
        error: str,
        finish_reason: str | None,
        model: str,
        input_tokens: int,
        output_tokens: int,
        text: str,
        paused: bool = False,
    ) -> None:
        """End the span with what came of the answer: ``error`` is ``""`` or the
        answer's outcome when it failed or was stopped (``error.type``)."""
        span = self._span
        if span is None:
            return
        if model:
            span.set_attribute("gen_ai.response.model", model)
        if finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if paused:
            span.set_attribute("parley.answer.paused", True)
        if self.content:
            ending = {"finish_reason": finish_reason or "error"}
            span.set_attribute("gen_ai.output.messages", _messages("assistant", [text], **ending))
        if error:
            span.set_attribute("error.type", error)
            span.set_status(trace.StatusCode.ERROR)
        span.end()
