"""What an operator's Prometheus scrapes (docs/operations.md, "Metrics").

The instruments are made once, at import, in prometheus-client's default registry. Under
several server processes (uvicorn's ``--workers``) each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (``parley_serve`` makes one), and a scrape, whichever process
answers it, adds them up (:mod:`parley.contrib.prometheus`): one scrape target for the whole
server, as a load balancer in front of the workers sees it. The gauges count the live
processes' sockets and rooms only.

The model's own figures use the OpenTelemetry GenAI semantic conventions' names, units and
bucket boundaries (``gen_ai.client.operation.duration`` is
``gen_ai_client_operation_duration_seconds`` here, as OpenTelemetry's Prometheus exporter
names it), so that dashboards made for them fit. One *operation* is one request to the
model: an answer that calls tools makes one per round.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

# OpenTelemetry GenAI semantic conventions (v1.41), "Generative AI client metrics".
TOKEN_BUCKETS = tuple(float(4**n) for n in range(14))  # 1, 4, 16, … 67,108,864
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)  # fmt: skip
FIRST_CHUNK_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                       2.5, 5.0, 7.5, 10.0)  # fmt: skip
GEN_AI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")

operation_duration = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "GenAI operation duration: one request to the model, from sending it to its last chunk.",
    (*GEN_AI_LABELS, "error_type"),
    buckets=DURATION_BUCKETS,
)
first_chunk = Histogram(
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    "Time from sending a request to the model to its first chunk of text or tool call.",
    GEN_AI_LABELS,
    buckets=FIRST_CHUNK_BUCKETS,
)
token_usage = Histogram(
    "gen_ai_client_token_usage",
    "Tokens the model read (input) and wrote (output) per request, as it counted them.",
    (*GEN_AI_LABELS, "gen_ai_token_type"),
    buckets=TOKEN_BUCKETS,
)

answers = Counter("parley_answers", "Answers ended, by outcome.", ("outcome",))
answer_duration = Histogram(
    "parley_answer_duration_seconds",
    "An answer's time from its start, or from going on after an approval, to its end.",
    ("outcome",),
    buckets=DURATION_BUCKETS,
)
first_delta = Histogram(
    "parley_answer_first_delta_seconds",
    "Time from an answer's start (its question's turn) to its first text sent to the room.",
    buckets=FIRST_CHUNK_BUCKETS,
)
tool_calls = Counter("parley_tool_calls", "Tool calls settled, by tool and status.",
                     ("tool", "status"))  # fmt: skip

sockets_open = Gauge("parley_sockets_open", "Room and inbox sockets open.",
                     multiprocess_mode="livesum")  # fmt: skip
rooms_open = Gauge(
    "parley_rooms_open",
    "Rooms with a socket open on a process (a room open on two processes counts twice).",
    multiprocess_mode="livesum",
)
frames_delivered = Counter("parley_frames_delivered", "Room frames handed to sockets.")
sockets_closed = Counter(
    "parley_sockets_closed",
    "Sockets the server closed, by close code (4008: too slow, 4029: rate-limited).",
    ("code",),
)
error_frames = Counter("parley_error_frames", "Error frames sent, by code.", ("code",))

OPERATION = "chat"  # gen_ai.operation.name: every request Parley makes is a chat completion


class Operation:
    """One request to the model, timed from when it is sent: :meth:`chunk` at each event
    it yields (its first is the time to first chunk), :meth:`usage` with its token counts,
    :meth:`end` once its stream is closed, with why it failed (``error_type``) if it did."""

    def __init__(self, *, provider: str, model: str) -> None:
        self.labels = (OPERATION, provider, model)
        self.started = time.perf_counter()
        self.chunked = False

    def chunk(self) -> None:
        if not self.chunked:
            self.chunked = True
            first_chunk.labels(*self.labels).observe(time.perf_counter() - self.started)

    def usage(self, *, prompt_tokens: int, completion_tokens: int) -> None:
        token_usage.labels(*self.labels, "input").observe(prompt_tokens)
        token_usage.labels(*self.labels, "output").observe(completion_tokens)

    def end(self, error_type: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        operation_duration.labels(*self.labels, error_type).observe(elapsed)
