"""A fake OpenAI-compatible model server for the tests: real HTTP on 127.0.0.1.

It speaks the chat-completions wire format (``POST /v1/chat/completions``, streamed as
server-sent events or answered as one JSON object) and runs aiohttp on a thread and loop of
its own, so it serves async tests whatever their loop, sync tests, and server subprocesses
(pass them ``server.base_url``). Each request follows a :class:`Script`; each is recorded as
an :class:`Exchange`, including how many tokens were written before the client went away.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_TOKENS = ["Hello", " from", " the", " fake", " model", "."]


@dataclass
class Script:
    """How the server answers one request.

    tokens: the content pieces, one chunk each.
    delay: seconds to wait before each token.
    status: an HTTP status other than 200 answers with ``error`` as the JSON body instead.
    fail_after: after this many tokens, send an SSE error event and end the stream.
    drop_after: after this many tokens, close the connection mid-response (a crash).
    garbage_after: after this many tokens, send a data line that is not JSON.
    hang: never answer (until the client gives up or the server stops).
    hang_after: after this many tokens, send nothing more (a model that stalls mid-answer).
    usage: end with a usage chunk with no choices, as OpenAI does for
        ``stream_options.include_usage`` (it is sent anyway when the request asks for it).
    usage_with_finish: put the usage in the chunk that gives the finish reason, as
        llama.cpp's server does.
    finish_reason: the reason that chunk gives (``None``: none, as some servers send).
    refuse_stream_options: answer a request carrying ``stream_options`` with HTTP 400, as
        servers that do not know the field do.
    model: the model's name in the response (default: the one asked for), as OpenAI
        names a dated version of the model asked for.
    tool_calls: calls of tools, as ``(name, arguments JSON)``, sent after the tokens in
        OpenAI's streamed form: a call's index, id and name in its first piece, then its
        arguments ``tool_call_piece`` characters at a time; the finish reason is then
        ``tool_calls``.
    tool_calls_whole: send each call in one piece, without an index, as some servers do.
    """

    tokens: list[str] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    delay: float = 0.0
    status: int = 200
    error: dict[str, Any] = field(
        default_factory=lambda: {
            "message": "The fake model failed on purpose.",
            "type": "server_error",
            "code": None,
        }
    )
    fail_after: int | None = None
    drop_after: int | None = None
    model: str | None = None
    garbage_after: int | None = None
    hang: bool = False
    hang_after: int | None = None
    usage: bool = False
    usage_with_finish: bool = False
    refuse_stream_options: bool = False
    finish_reason: str | None = "stop"
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    tool_call_piece: int = 7
    tool_calls_whole: bool = False

    @property
    def text(self) -> str:
        """The whole answer, as the tokens join."""
        return "".join(self.tokens)


@dataclass
class Exchange:
    """One request the server received, and what it did with it. Fields change while the
    response is being written (from the server's thread)."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: Any
    script: Script
    tokens_sent: int = 0
    disconnected: bool = False  # the client closed the connection before the response ended
    dropped: bool = False  # the server closed it, as scripted by ``drop_after``
    finished: bool = False  # the whole response was written


class FakeOpenAIServer:
    """Start with :meth:`start` (or ``with``); requests go to :attr:`base_url`.

    Answers follow the scripts queued with :meth:`enqueue`, one per request, then
    :attr:`script`. Requests are recorded in :attr:`exchanges`.
    """

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.exchanges: list[Exchange] = []
        self._queue: collections.deque[Script] = collections.deque()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._failure: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def last(self) -> Exchange:
        """The latest request (fails the test if there was none)."""
        assert self.exchanges, "the fake model server received no request"
        return self.exchanges[-1]

    def enqueue(self, *scripts: Script) -> None:
        """Answer the next requests with ``scripts``, in order."""
        self._queue.extend(scripts)

    # Lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeOpenAIServer:
        self._thread = threading.Thread(
            target=self._run, name=f"fake-openai-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            raise RuntimeError(f"the fake model server did not start: {self._failure!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
        else:  # never started: give the port back
            self._sock.close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a client that goes away cancels its handler at once, which is
        # how the server notices a disconnect even between tokens.
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            for task in list(self._handlers):
                task.cancel()
            await runner.cleanup()

    # Waiting (from the tests) ---------------------------------------------------------------

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait, without blocking the caller's loop, until ``condition()`` holds; fail the
        test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s; exchanges: {self.exchanges}"
                )
            await asyncio.sleep(0.01)

    async def client_went_away(self, *, settle: float = 0.3, timeout: float = 5.0) -> Exchange:
        """Wait until the client of the latest request has closed its connection, then check
        for ``settle`` seconds that no more tokens are written. Returns that exchange."""
        exchange = self.last
        await self.wait_for(lambda: exchange.disconnected, timeout)
        sent = exchange.tokens_sent
        await asyncio.sleep(settle)
        assert exchange.tokens_sent == sent, "tokens were written after the client went away"
        assert not exchange.finished
        return exchange

    # HTTP -----------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
        )

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            raw = await request.read()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            script = self._queue.popleft() if self._queue else self.script
            exchange = Exchange(
                path=request.path,
                headers={name.lower(): value for name, value in request.headers.items()},
                body=body,
                script=script,
            )
            self.exchanges.append(exchange)
            try:
                return await self._answer(request, exchange)
            except (asyncio.CancelledError, ConnectionResetError):
                # Unless the server itself hung up (scripted, or stopping), the client did.
                stopping = self._stopping is not None and self._stopping.is_set()
                exchange.disconnected = not (exchange.dropped or stopping)
                raise
        finally:
            self._handlers.discard(task)

    async def _answer(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        script, body = exchange.script, exchange.body
        if script.hang:
            await asyncio.sleep(3600)
        if script.status != 200:
            exchange.finished = True
            return web.json_response({"error": script.error}, status=script.status)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            exchange.finished = True
            error = {"message": "'messages' is required", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        if script.refuse_stream_options and "stream_options" in body:
            exchange.finished = True
            error = {
                "message": "Unrecognized request argument supplied: stream_options",
                "type": "invalid_request_error",
            }
            return web.json_response({"error": error}, status=400)
        model = script.model or str(body.get("model", "fake-model"))
        if not body.get("stream"):
            return await self._answer_whole(exchange, model)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        chunk = _chunk_factory(model)

        async def event(data: Any) -> None:
            await response.write(f"data: {json.dumps(data)}\n\n".encode())

        await event(chunk({"role": "assistant", "content": ""}))
        for index, token in enumerate(script.tokens):
            if script.fail_after is not None and index >= script.fail_after:
                await event({"error": script.error})
                await response.write_eof()
                exchange.finished = True
                return response
            if script.drop_after is not None and index >= script.drop_after:
                exchange.dropped = True
                assert request.transport is not None
                request.transport.abort()
                return response
            if script.hang_after is not None and index >= script.hang_after:
                await asyncio.sleep(3600)
            if script.garbage_after is not None and index >= script.garbage_after:
                await response.write(b"data: {this is not json\n\n")
                await response.write_eof()
                exchange.finished = True
                return response
            if script.delay:
                await asyncio.sleep(script.delay)
            await event(chunk({"content": token}))
            exchange.tokens_sent += 1
        for delta in _tool_call_deltas(script):
            await event(chunk(delta))
        finish = "tool_calls" if script.tool_calls else script.finish_reason
        await event(chunk({}, finish_reason=finish, usage=script.usage_with_finish))
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if script.usage or wants_usage:
            usage = chunk({}, usage=True)
            usage["choices"] = []
            await event(usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        exchange.finished = True
        return response

    async def _answer_whole(self, exchange: Exchange, model: str) -> web.Response:
        script = exchange.script
        if script.delay:
            await asyncio.sleep(script.delay * len(script.tokens))
        exchange.tokens_sent = len(script.tokens)
        exchange.finished = True
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": script.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(len(script.tokens)),
            }
        )


def _tool_call_deltas(script: Script) -> Iterator[dict[str, Any]]:
    """The deltas that carry the script's tool calls, as OpenAI streams them."""
    for index, (name, arguments) in enumerate(script.tool_calls):
        ident = f"call_{uuid.uuid4().hex[:12]}"
        if script.tool_calls_whole:
            call = {
                "id": ident,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            yield {"tool_calls": [call]}
            continue
        first = {
            "index": index,
            "id": ident,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        yield {"role": "assistant", "content": None, "tool_calls": [first]}
        step = script.tool_call_piece
        for start in range(0, len(arguments), step):
            piece = {"index": index, "function": {"arguments": arguments[start : start + step]}}
            yield {"tool_calls": [piece]}


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": 10,
        "completion_tokens": completion_tokens,
        "total_tokens": 10 + completion_tokens,
    }


def _chunk_factory(model: str) -> Callable[..., dict[str, Any]]:
    """Chunks of one completion: the same id and creation time, as OpenAI sends them."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    count = 0

    def chunk(
        delta: dict[str, Any], *, finish_reason: str | None = None, usage: bool = False
    ) -> dict[str, Any]:
        nonlocal count
        if "content" in delta and delta["content"]:
            count += 1
        data: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if usage:
            data["usage"] = _usage(count)
        return data

    return chunk


def serve(script: Script | None = None) -> Iterator[FakeOpenAIServer]:
    """A fixture body: ``yield from serve()`` starts a server and stops it afterwards."""
    with FakeOpenAIServer(script) as server:
        yield server
