"""Running assistant answers. An answer belongs to its room, not to the socket that asked.

Each answer runs as a task of the server process that accepted the question. Its process's hub
listens to the room's control group for it, so that a member connected to any process can stop
it or ask for the text so far. Deltas go to the room group, coalesced: the first at once, later
ones every ``STREAM_FLUSH_INTERVAL`` seconds. If the channel layer fails meanwhile, the answer
goes on (its text is saved by its heartbeat) and clients catch up once the layer is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from enum import Enum
from typing import Any, cast

from .. import metrics, protocol
from ..backends import get_backend
from ..backends.base import (
    AssistantBackend,
    AssistantRequest,
    BackendEvent,
    Finish,
    Model,
    TextDelta,
    ToolCall,
    ToolRound,
    ToolSpec,
    Usage,
    backend_event,
)
from ..conf import get_config
from ..exceptions import BackendError
from ..metrics.tracing import AnswerSpan
from ..models import Message, Room, ToolRun
from ..protocol import events
from ..realtime.db import database_call, knowledge_call
from ..realtime.hub import broadcast, get_hub
from ..rendering import MarkdownStream
from ..rooms.payloads import message_payload
from ..tools.approvals import UNSETTLED_STATUSES
from ..tools.calls import tools_run, unknown_outcome
from ..tools.definitions import Tool
from ..tools.payloads import tool_run_payload
from ..tools.records import tool_rounds
from ..tools.registry import tools_for
from ..usage.metering import Meter
from . import records

logger = logging.getLogger(__name__)


WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

# Strong references to running answers (asyncio keeps only weak ones), with their tasks.


_running: dict[int, tuple[Answer, asyncio.Task[None]]] = {}


class StopReason(Enum):
    """Why an answer was stopped; kept apart from who stopped it, so that no username can
    pass for a reason (a member called ``shutdown`` once had his stop stored as a restart)."""

    CANCELLED = "cancelled"  # a member pressed stop
    SHUTDOWN = "shutdown"  # this process is going down


class Answer:
    """One answer being generated; see :func:`answer_generate`."""

    def __init__(
        self, *, room: Room, message: Message | None = None, asker_id: int | None = None
    ) -> None:
        self.room = room
        self.asker_id = asker_id  # who asked for it, if not its question's author
        self.message = message  # None until answer_generate() has stored it
        self.parts: list[str] = []
        self.sent = 0  # characters already sent to the room as deltas
        self.sent_parts = 0  # the parts they came from
        self.markdown = MarkdownStream()  # the HTML of the text sent, for the deltas
        self.rendered_at = -math.inf  # when it was last rendered (the loop's clock)
        self.saved = 0  # parts saved by the heartbeat (see _save_progress)
        # What the backend reported (the last of each), for the log: finish_reason is
        # "cancelled" or "error" when the answer did not finish.
        self.usage: Usage | None = None
        self.meter = Meter()  # the tokens of its requests not stored yet
        self.usage_stored = False  # whether its usage row exists
        self.span: AnswerSpan | None = None  # its trace, while it runs
        self.finish_reason: str | None = None
        self.model = ""  # the model's name as its server gave it, if it did
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: StopReason | None = None
        self.stopped_by = ""  # who pressed stop, for a CANCELLED answer
        self.called_tools = False
        self.sources: list[dict[str, str]] | None = None  # the passages it was given
        # Paused: a tool call waits for approval; the answer goes on from its rows, on
        # whichever process the decision comes to (parley/answers/approvals.py).
        self.paused = False
        self.resumed = False
        # Control events that came while the answer to go on with was being decided.
        self._early: list[dict[str, Any]] | None = None
        self._replies: set[asyncio.Task[bool]] = set()  # snapshots being sent
        self.started = time.perf_counter()  # or resumed: for the metrics

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def expect_resume(self) -> None:
        """Keep the control events that come before :meth:`resume` says which answer this
        is: a stop pressed while the decision is being stored is not lost."""
        self._early = []

    def resume(self, message: Message) -> None:
        """Go on with ``message``, an answer paused for an approval: its text so far is
        the members' already, and its tool rounds are read from the database when it runs."""
        self.message = message
        self.parts = [message.text] if message.text else []
        self.sent = len(message.text)
        self.sent_parts = self.saved = len(self.parts)
        self.resumed = self.called_tools = self.usage_stored = True
        self.started = time.perf_counter()
        early, self._early = self._early or [], None
        for event in early:
            self.control(event)

    async def listen(self) -> None:
        """Have the hub pass the room's control events to :meth:`control`. Done before the
        answer is announced, so that a stop pressed as soon as it appears is not lost."""
        await get_hub().listen(self.room.control_group_name, self.control)

    async def unlisten(self) -> None:
        await get_hub().unlisten(self.room.control_group_name, self.control)

    async def run(self) -> None:
        assert self.message is not None  # answer_generate() stores it before it runs this
        self.span = span = self._trace()
        try:
            with span.current():
                status, error = await self._generate()
        except BaseException:  # the process goes down: its span ends too
            span.end(error="interrupted", finish_reason=None, model="", input_tokens=0,
                     output_tokens=0, text=self.text)  # fmt: skip
            raise
        finally:
            await self.unlisten()
        failed = status in (Message.Status.FAILED, Message.Status.INTERRUPTED)
        span.end(
            error=status if failed else "",
            finish_reason=self.finish_reason,
            model=self.model or self.message.model,
            input_tokens=self.meter.totals[0],
            output_tokens=self.meter.totals[1],
            text=self.text,
            paused=self.paused,
        )
        if self.paused:  # whoever decides goes on with it (parley/answers/approvals.py)
            logger.info("answer %s in room %s waits for approval", self.message.pk, self.room.pk)
            return
        final = await database_call(
            records.answer_finish,
            answer=self.message,
            text=self.text,
            status=status,
            error=error,
            model=self.model,
            called_tools=self.called_tools,
            meter=self.meter.take(),
            first_usage=not self.usage_stored,
            asker_id=self.asker_id,
            sources=self.sources,
        )
        await broadcast(self.room, protocol.done(message_payload(final)))
        metrics.answers.labels(status).inc()
        metrics.answer_duration.labels(status).observe(time.perf_counter() - self.started)
        if status == Message.Status.FAILED:
            await broadcast(
                self.room,
                protocol.error("assistant_failed", error, message_id=final.pk),
            )
        usage = self.usage
        logger.info(
            "answer %s in room %s: %s, %d characters, finish %s, tokens %s",
            final.pk,
            self.room.pk,
            status,
            len(self.text),
            self.finish_reason or "unknown",
            f"{usage.prompt_tokens}+{usage.completion_tokens}" if usage else "not counted",
        )
        if self.stop_reason is not StopReason.SHUTDOWN:  # not while the server goes down
            await self._answer_next()

    def _trace(self) -> AnswerSpan:
        """The answer's span, named after its backend's model (the backend may not be made:
        the answer then fails, and its span says so)."""
        assert self.message is not None  # started by run()
        try:
            backend = get_backend(self.room.backend)
            provider, model = backend.provider_name, backend.model_name
        except Exception:
            provider, model = AssistantBackend.provider_name, self.message.model
        return AnswerSpan(
            conversation=self.room.public_id,
            provider=provider,
            model=model,
            content=get_config().trace_content,
        )

    async def _answer_next(self) -> None:
        """Answer the question waiting next in the room, now that this answer has ended."""
        # Not at import: the queue starts its answers with answer_generate, below.
        from .queue import answer_next

        try:
            await answer_next(room=self.room)
        except Exception:  # the room was deleted, or the database is away: the watch retries
            logger.exception("could not answer the next waiting question of room %s", self.room.pk)

    async def _generate(self) -> tuple[str, str]:
        pump = asyncio.create_task(self._pump())
        self.task = pump
        if self.stop_reason is not None:  # stopped before it started
            pump.cancel()
        try:
            await pump
        except asyncio.CancelledError:
            if self.stop_reason is None:  # not ours: the process is going down
                raise
            if self.stop_reason is StopReason.SHUTDOWN:
                return Message.Status.INTERRUPTED, "The server restarted during this answer."
            logger.info(
                "answer %s stopped by %s", self.message and self.message.pk, self.stopped_by
            )
            return Message.Status.CANCELLED, ""
        except BackendError as exc:
            # The members see the plain sentence; the address and the upstream's own words
            # are for whoever reads the log.
            logger.warning(
                "assistant backend failed in room %s: %s %s", self.room.pk, exc, exc.detail
            )
            return Message.Status.FAILED, str(exc)
        except Exception:
            logger.exception("assistant backend failed in room %s", self.room.pk)
            return Message.Status.FAILED, "The assistant failed unexpectedly."
        finally:
            await self._flush(render=False)  # `done` carries the whole answer's HTML
        return Message.Status.COMPLETE, ""

    async def _pump(self) -> None:
        try:
            await self._consume()
        except asyncio.CancelledError:
            self.finish_reason = "cancelled"
            raise
        except Exception:
            self.finish_reason = "error"
            raise

    async def _consume(self) -> None:
        """Ask the room's backend, with the tools its alias offers, and take its events:
        text deltas go to the room (the first at once, later ones coalesced by the
        process's flush pass), tool calls are run as the asker and their results sent back
        in a new request, round after round (docs/tools.md); the rest is kept on the
        answer. A resumed answer first goes on with the rounds it made before its pause."""
        assert self.message is not None  # started by run()
        backend = get_backend(self.room.backend)
        tools = tools_for(self.room.backend)
        # Off the database thread: the search may rebuild the knowledge index first.
        request = await knowledge_call(records.answer_request, answer=self.message)
        self.sources = records.answer_sources(request=request)
        specs = tuple(ToolSpec(tool.name, tool.description, tool.parameters) for tool in tools)
        request = replace(request, tools=specs)
        if self.span is not None:
            self.span.asked(request.question)
        round_ = 0
        if self.resumed:
            start = 0
            for runs in await database_call(tool_rounds, answer=self.message):
                round_, position = runs[0].round, runs[0].position
                done = await self._tools(runs, tools, text=self.text[start:position])
                if done is None:
                    return
                start = position
                request = replace(request, rounds=(*request.rounds, done))
        last = get_config().tools["MAX_ROUNDS"]
        while True:
            round_ += 1
            if round_ > last:  # the rounds are used up: the model answers with what it has
                request = replace(request, tool_choice="none")
            first = len(self.parts)
            calls = await self._stream(backend, request)
            if not calls:
                return
            if round_ > last:
                logger.info("answer %s: tool calls past the last round ignored", self.message.pk)
                return
            # Stored with the text so far and the tokens so far: a pause leaves them saved
            # for whoever goes on.
            runs = await database_call(
                records.tool_round_store,
                answer=self.message,
                calls=calls,
                round=round_,
                text=self.text,
                meter=self.meter.take(),
                model=self.model,
                first_usage=not self.usage_stored,
                asker_id=self.asker_id,
            )
            self.usage_stored = True
            self.saved, self.called_tools = len(self.parts), True
            done = await self._tools(runs, tools, text="".join(self.parts[first:]))
            if done is None:
                return
            request = replace(request, rounds=(*request.rounds, done))

    async def _tools(
        self, runs: list[ToolRun], tools: tuple[Tool, ...], *, text: str
    ) -> ToolRound | None:
        """Run the calls of a round not settled yet, and tell the room of each; return the
        round, for the model, or ``None`` when a call waits for approval (then the answer
        pauses)."""
        assert self.message is not None  # started by run()
        answer = self.message

        async def tell(run: ToolRun) -> None:
            if run.status == ToolRun.Status.PENDING:
                self.paused = True  # before anyone can know the call: see control()
            await tool_step_tell(self.room, run)

        if not await tools_run(answer=answer, runs=runs, tools=tools, on_step=tell):
            return None
        return _tool_round(runs, text)

    async def _stream(self, backend: AssistantBackend, request: AssistantRequest) -> list[ToolCall]:
        """Take one reply of the backend's; return the tools it called."""
        # The contract's stream is an async generator: closed when the answer stops.
        stream = cast("AsyncGenerator[str, None]", backend.stream(request))
        calls: list[ToolCall] = []
        # A round after tool calls goes on from the text before them, a paragraph on.
        joint = "\n\n" if self.parts and not self.text.endswith("\n\n") else ""
        operation = metrics.Operation(provider=backend.provider_name, model=backend.model_name)
        error = ""
        first = len(self.parts)
        counted: Usage | None = None  # by the server, for this request
        answered = False  # whether any of the reply came
        try:
            async for item in stream:
                event = backend_event(item, backend=backend)
                if isinstance(event, ToolCall | TextDelta):
                    operation.chunk()
                    answered = True
                elif isinstance(event, Usage):
                    counted = event
                    operation.usage(
                        prompt_tokens=event.prompt_tokens,
                        completion_tokens=event.completion_tokens,
                    )
                if isinstance(event, ToolCall):
                    calls.append(event)
                    continue
                if not isinstance(event, TextDelta):
                    self._note(event)
                    continue
                if not event.text:
                    continue
                if joint:
                    self.parts.append(joint)
                    joint = ""
                self.parts.append(event.text)
                if len(self.parts) == 1:
                    metrics.first_delta.observe(time.perf_counter() - self.started)
                    await self._flush()  # the first delta goes out at once; later ones by _flusher
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as exc:
            error = type(exc).__qualname__
            raise
        finally:
            # Closing the generator closes the upstream request: nothing more is generated.
            await stream.aclose()
            operation.end(error)
            if not backend.uses_tokens:
                counted = Usage(prompt_tokens=0, completion_tokens=0)
            # A request that failed before the model wrote anything (refused, unreachable)
            # cost nothing; one stopped did: its prompt was read.
            if counted is not None or answered or error in ("", "cancelled"):
                text = "".join(self.parts[first:])
                self.meter.add(counted, request=request, text=text, calls=calls)
        return calls

    def _note(self, event: BackendEvent) -> None:
        """Keep what the backend reports besides text and tool calls: the last usage,
        model name and finish reason."""
        if isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Model):
            self.model = event.name
        elif isinstance(event, Finish):
            self.finish_reason = event.reason

    @property
    def unsent(self) -> bool:
        """Whether text has arrived since the last delta."""
        return self.sent_parts < len(self.parts)

    async def _flush(self, *, render: bool = True) -> None:
        """Send the room the text not sent yet, as one delta; with the HTML of the text sent
        so far if ``render`` and ``STREAM_RENDER_INTERVAL`` has passed since the last."""
        if not self.unsent:
            return
        chunk = "".join(self.parts[self.sent_parts :])
        offset = self.sent
        assert self.message is not None  # flushed only while it runs
        self.sent_parts, self.sent = len(self.parts), offset + len(chunk)
        blocks = self._render() if render else None
        # The end of the answer or a stop may cancel a flush while it sends (with Redis a
        # send suspends): the send finishes, so that the delta is neither lost nor sent twice.
        delta = protocol.delta(message_id=self.message.pk, offset=offset, text=chunk, blocks=blocks)
        await broadcast(self.room, delta, finish=True)

    def _render(self) -> dict[str, Any] | None:
        """The blocks that changed since the last render, if one is due."""
        now = asyncio.get_running_loop().time()
        if now - self.rendered_at < get_config().stream_render_interval:
            return None
        self.rendered_at = now
        update = self.markdown.update("".join(self.parts[: self.sent_parts]))
        return update.wire() if update else None

    def stop(self, reason: StopReason, *, by: str = "") -> None:
        """Stop generating, for ``reason``; ``by`` is who pressed stop, if someone did. An
        answer not started yet stops as it starts."""
        if self.stop_reason is not None or (self.task is not None and self.task.done()):
            return
        self.stop_reason, self.stopped_by = reason, by
        if self.task is not None:
            self.task.cancel()

    def control(self, event: dict[str, Any]) -> None:
        """A control event of the room: a cancel request or a snapshot request."""
        if self._early is not None:
            self._early.append(event)
            return
        # Not stored yet: the event is for an earlier answer. Paused: no longer this
        # process's to stop or to snapshot (whoever decides goes on with it).
        if self.message is None or self.paused:
            return
        kind = event.get("type")
        target = event.get("message_id")
        if target not in (None, self.message.pk):
            return
        if kind == events.CANCEL:
            self.stop(StopReason.CANCELLED, by=event.get("by") or "?")
        elif kind == events.SNAPSHOT:
            # The whole text so far as a delta at offset 0: the asker replaces its copy.
            snapshot = protocol.delta(
                message_id=self.message.pk,
                offset=0,
                text=self.text,
                blocks=self.markdown.snapshot().wire(),
            )
            reply_to = event["reply_to"]
            reply = asyncio.create_task(
                get_hub().send(reply_to["channel"], events.frame_event(snapshot, to=reply_to["to"]))
            )
            self._replies.add(reply)
            reply.add_done_callback(self._replies.discard)


async def tool_step_tell(room: Room, run: ToolRun) -> None:
    """Send the room a step of an answer's tool calls (a ``tool`` frame), and count the
    call in the metrics once it has settled."""
    if run.status not in UNSETTLED_STATUSES:
        metrics.tool_calls.labels(run.tool, run.status).inc()
    await broadcast(room, protocol.tool(message_id=run.answer_id, step=tool_run_payload(run)))


def _tool_round(runs: list[ToolRun], text: str) -> ToolRound:
    """A round of the answer's as the model is sent it: its text, its calls, their results."""
    calls = tuple(ToolCall(run.call_id, run.tool, run.arguments) for run in runs)
    results = tuple(
        # A sync call left running past its timeout, read back after a pause.
        unknown_outcome(run.tool) if run.status == ToolRun.Status.RUNNING and not run.result
        else run.result
        for run in runs
    )  # fmt: skip
    return ToolRound(text, calls, results)


async def answer_generate(
    *,
    room: Room,
    question: Message,
    version_of: Message | None = None,
    asker_id: int | None = None,
) -> Message:
    """Open an answer to ``question`` and start generating it in the background; with
    ``version_of`` (the first answer to it), a new version of that answer, which
    ``asker_id`` asked for (its usage is theirs; the question's author's by default).

    Returns the stored streaming message once it has been broadcast. Raises
    :class:`parley.exceptions.AssistantBusy` if the room already has an answer streaming.
    The answer goes on if the asker disconnects; any member stops it with :func:`answer_cancel`.
    """
    # Listen before the answer takes its seq: nothing may suspend between storing a message
    # and broadcasting it, or a later message of the room goes out first (with Redis, the
    # SUBSCRIBE is a round trip) and every member sees a gap and resumes.
    answer = Answer(room=room, asker_id=asker_id)
    await answer.listen()
    try:
        message, interrupted = await database_call(
            records.answer_open,
            room=room,
            reply_to=question,
            worker=WORKER_ID,
            model=_model_name(room),
            version_of=version_of,
        )
    except BaseException:
        await answer.unlisten()
        raise
    answer.message = message
    for stale in interrupted:  # the answer of a dead process, closed to make room
        await broadcast(room, protocol.done(message_payload(stale)))
    await broadcast(room, protocol.message(message_payload(message)))
    answer_start(answer)
    return message


def answer_start(answer: Answer) -> None:
    """Run ``answer`` (its message stored, its control events listened to) in the
    background, in this process's heartbeat and flush passes."""
    message = answer.message
    assert message is not None
    task = asyncio.create_task(answer.run(), name=f"parley-answer-{message.pk}")
    _running[message.pk] = (answer, task)

    def forget(ended: asyncio.Task[None]) -> None:
        # Only itself: the task of an answer that paused may end after the answer went on.
        if _running.get(message.pk, (None, None))[1] is ended:
            del _running[message.pk]

    task.add_done_callback(forget)
    _heartbeat.start()
    _flusher.start()


def _model_name(room: Room) -> str:
    """The name of the model that will answer in ``room``, as its backend gives it; ``""``
    if the backend cannot be made (the answer then fails, with the reason, when it runs)."""
    try:
        return get_backend(room.backend).model_name
    except Exception:
        return ""


class _Pass:
    """A task of this process that does ``step`` for all its answers every ``interval()``
    seconds while it runs any: one timer for hundreds of answers instead of one each."""

    def __init__(
        self, name: str, step: Callable[[], Awaitable[None]], interval: Callable[[], float]
    ) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        task = self.task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self.task = asyncio.create_task(self._run(), name=f"parley-{self.name}")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        # On a fixed schedule, so that a pass that takes long does not stretch the period.
        interval = self.interval()
        loop = asyncio.get_running_loop()
        due = loop.time()
        while _running:
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())
            try:
                await self.step()
            except Exception:  # the database or the layer is away: the next pass tries again
                logger.exception("the %s of %d answer(s) failed", self.name, len(_running))


async def _save_progress() -> None:
    """The heartbeat: save the text so far of every answer this process runs, in one
    database call; the writes' stamps tell other processes that these answers are alive
    (:func:`records.answers_mark_stale`). At hundreds of answers, a task and a database hop
    per answer were a third of the database thread's work (bench/README.md)."""
    texts: dict[int, str] = {}
    alive: list[int] = []
    saved: list[tuple[Answer, int]] = []
    for pk, (answer, _) in list(_running.items()):
        if len(answer.parts) > answer.saved:
            texts[pk] = answer.text
            saved.append((answer, len(answer.parts)))
        else:
            alive.append(pk)
    await database_call(records.answers_save_progress, texts=texts, alive=alive)
    for answer, parts in saved:
        answer.saved = parts


async def _flush_waiting() -> None:
    """Send every answer's text that arrived since its last delta, each as one delta, in the
    order the answers started: each answer's place in the pass, and so the time between its
    deltas, stays the same from one pass to the next."""
    for answer, _ in list(_running.values()):
        if answer.unsent:  # one with nothing new costs no coroutine
            await answer._flush()


_heartbeat = _Pass("heartbeat", _save_progress, lambda: get_config().stream_persist_interval)
_flusher = _Pass("flush", _flush_waiting, lambda: get_config().stream_flush_interval)


async def answers_shutdown(timeout: float = 5.0) -> None:
    """Stop every answer of this process as ``interrupted`` and wait until each is stored
    and announced. Called when the server shuts down."""
    running = list(_running.values())
    for answer, _ in running:
        answer.stop(StopReason.SHUTDOWN)
    if running:
        await asyncio.wait([task for _, task in running], timeout=timeout)
        logger.info("interrupted %d running answer(s) at shutdown", len(running))
    _heartbeat.stop()
    _flusher.stop()


def answers_running() -> list[int]:
    """Ids of the answers this process is generating."""
    return list(_running)
