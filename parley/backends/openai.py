"""An assistant on any OpenAI-compatible chat-completions server: OpenAI itself, Ollama,
llama.cpp's server, vLLM, LM Studio. Needs the ``openai`` extra (``pip install 'parley[openai]'``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from ..exceptions import BackendError, MissingDependency
from .base import (
    AssistantBackend,
    AssistantRequest,
    BackendEvent,
    Finish,
    Model,
    TextDelta,
    ToolCall,
    Usage,
)
from .prompt import (
    DEFAULT_SYSTEM_PROMPT,
    build_messages,
    sources_markdown,
    tools_param,
    withheld_markdown,
)

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["OpenAIBackend"]

logger = logging.getLogger(__name__)


try:
    import openai
    from openai.types.chat import ChatCompletionChunk
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependency(
        "The OpenAI backend needs the openai package: pip install 'parley[openai]'"
    ) from exc

# Without a key the client refuses to start; local servers (Ollama, llama.cpp) need none.
PLACEHOLDER_API_KEY = "not-needed"

# The longest server error message passed on to users; longer ones are cut.
MAX_DETAIL_CHARS = 200

# OpenAI-style keys ("sk-...", "sk-proj-..."), which servers may echo back, even masked.
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*.\-]{6,}")


def display_url(url: str) -> str:
    """``url`` fit for an error message: no user name, password or query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _usage(reported: object) -> Usage | None:
    """The token counts of a chunk's ``usage``, if it has both (the client does not check
    what servers send)."""
    prompt = getattr(reported, "prompt_tokens", None)
    completion = getattr(reported, "completion_tokens", None)
    if isinstance(prompt, int) and isinstance(completion, int):
        return Usage(prompt_tokens=prompt, completion_tokens=completion)
    return None


class _ToolCalls:
    """The tool calls of one streamed reply, put together from their pieces: a call's
    ``index`` says which call a piece continues; its id and name come once, its arguments'
    JSON in pieces (all at once from some servers, Ollama's among them)."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[list[str], list[str], list[str]]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, pieces: object) -> None:
        for piece in pieces if isinstance(pieces, list) else ():
            index = getattr(piece, "index", None)
            if not isinstance(index, int):  # servers that number nothing send whole calls
                index = len(self._calls)
            ident, name, arguments = self._calls.setdefault(index, ([], [], []))
            if isinstance(getattr(piece, "id", None), str) and not ident:
                ident.append(piece.id)
            function = getattr(piece, "function", None)
            part = getattr(function, "name", None)
            # Some servers repeat the whole name in every piece: the same again adds nothing.
            if isinstance(part, str) and part and part != "".join(name):
                name.append(part)
            part = getattr(function, "arguments", None)
            if isinstance(part, str):
                arguments.append(part)

    def whole(self) -> list[ToolCall]:
        """The calls, in their order; one without an id gets one."""
        return [
            ToolCall(
                id="".join(ident) or f"call_{index}",
                name="".join(name),
                arguments="".join(arguments),
            )
            for index, (ident, name, arguments) in sorted(self._calls.items())
        ]


class OpenAIBackend(AssistantBackend):
    """Streams answers from ``POST {base_url}/chat/completions`` with ``stream=true``.

    Options (keyword only):
        model: the model name (default ``gpt-4o-mini``).
        base_url: the server's API root, e.g. ``http://127.0.0.1:11434/v1`` (default: the
            ``OPENAI_BASE_URL`` environment variable, else OpenAI).
        api_key: the key (default: ``OPENAI_API_KEY``, else a placeholder for local servers).
        timeout: seconds to wait to connect, and for each piece of the reply.
        system_prompt: the system message opening every request ("" for none).
        temperature, max_tokens: sent when not ``None``.
        extra_body: more JSON fields for the request body (server-specific options).
        max_retries: retries of a failed request before any text arrives (default 0: the
            room sees the error at once and a member can ask again).
        include_usage: ask for the token counts (``stream_options.include_usage``), which
            the backend yields as :class:`Usage` when the server reports them (default
            true). A server that refuses the field with HTTP 400 is asked again without it,
            and is not asked for it again by this backend.

    One HTTP client is kept per event loop (connection pools belong to a loop); the first
    ``stream`` on a loop creates it and :meth:`aclose` closes them.
    """

    provider_name = "openai"  # any server of its API: OpenAI, Ollama, vLLM, llama.cpp's

    calls_tools = True

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini",
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        max_retries: int = 0,
        include_usage: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not model:
            raise ImproperlyConfigured("The OpenAI backend needs a model name (PARLEY_MODEL).")
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = float(timeout)
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self.max_retries = max_retries
        self.include_usage = include_usage
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI]
        self._clients = weakref.WeakKeyDictionary()

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A client of a closed loop cannot be closed any more; forget it (its connections
            # hold a reference to that loop, so the weak key alone would not let it go).
            for old in [old for old in self._clients if old.is_closed()]:
                del self._clients[old]
            client = openai.AsyncOpenAI(
                api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
                # The SDK's default client closes itself on garbage collection on whatever
                # loop runs then; this one is closed by aclose() on its own loop.
                http_client=openai.DefaultAsyncHttpxClient(timeout=self.timeout),
            )
            self._clients[loop] = client
        return client

    @property
    def model_name(self) -> str:
        return self.model

    async def stream(self, request: AssistantRequest) -> AsyncIterator[BackendEvent]:
        """Yield the model's name as the server gives it (:class:`Model`), and the text
        pieces of its answer as they arrive; with passages, the prompt carries them as
        numbered sources and the answer ends with their links (see
        :func:`~parley.backends.prompt.sources_markdown`; and with
        :data:`~parley.backends.prompt.WITHHELD_NOTE` when some were withheld). Then
        the server's token counts as :class:`Usage`, if it sent them, and a :class:`Finish`
        with the ``finish_reason`` it gave (``"stop"`` if it gave none).

        Raises :class:`BackendError` (a plain sentence for users; the server's address and
        its own words in ``detail``, for the log; never the API key) when
        the server cannot be reached, times out, refuses the request, or reports an error
        mid-answer. When the generator is closed or the task consuming it is cancelled, the
        HTTP response is closed at once, which tells the server to stop generating.
        """
        client = self._client()
        response = await self._create(client, request)
        reason = "stop"
        usage: Usage | None = None
        model = ""  # as the server names it
        text: list[str] = []  # for the sources it cites
        calls = _ToolCalls()
        try:
            while (chunk := await self._next_chunk(response, client)) is not None:
                if chunk.model and chunk.model != model:
                    model = chunk.model
                    yield Model(model)
                # OpenAI sends the usage in a last chunk without choices; llama.cpp's server
                # with the chunk that finishes.
                usage = _usage(chunk.usage) or usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                delta = getattr(choice, "delta", None)
                content = getattr(delta, "content", None)
                if content:
                    text.append(content)
                    yield TextDelta(content)
                calls.add(getattr(delta, "tool_calls", None))
                reason = getattr(choice, "finish_reason", None) or reason
        finally:
            # Reached on exhaustion, error, aclose() and cancellation alike: closing the
            # response drops the connection, and the server stops generating.
            await response.close()
        for call in calls.whole():
            yield call
        if not calls:  # the answer's last round: its sources end it
            ending = sources_markdown(request.passages, answer="".join(text))
            ending += withheld_markdown(request)
            if ending:
                yield TextDelta(ending)
        if usage is not None:
            yield usage
        yield Finish(reason)

    async def _create(
        self, client: openai.AsyncOpenAI, request: AssistantRequest
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        """The streamed response to ``request``, once the server has accepted it. Options
        left unset are not sent, so that the server's defaults apply."""
        params: dict[str, Any] = {}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.include_usage:
            params["stream_options"] = {"include_usage": True}
        if request.tools:
            params["tools"] = tools_param(request)
            if request.tool_choice != "auto":  # the server's default with tools
                params["tool_choice"] = request.tool_choice
        try:
            try:
                return await self._request(client, request, params)
            except openai.BadRequestError as exc:
                if "stream_options" not in params:
                    raise
                # Older OpenAI-compatible servers and some gateways refuse fields they do
                # not know: answer without the token counts rather than not at all.
                logger.warning(
                    "the model server at %s refused stream_options (%s); asking without it",
                    display_url(str(client.base_url)),
                    exc.message,
                )
                self.include_usage = False
                del params["stream_options"]
                return await self._request(client, request, params)
        except openai.OpenAIError as exc:
            raise self._error(exc, client=client, answering=False) from None

    async def _request(
        self, client: openai.AsyncOpenAI, request: AssistantRequest, params: dict[str, Any]
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        """The streamed response, once the server accepted the request; the client's errors
        are raised as they are."""
        response = await client.chat.completions.create(
            model=self.model,
            # The dicts of build_messages have the keys of openai's message TypedDicts.
            messages=cast(
                "list[ChatCompletionMessageParam]",
                build_messages(request, system_prompt=self.system_prompt),
            ),
            stream=True,
            extra_body=self.extra_body or None,
            **params,
        )
        # With stream=True it is a stream; **params hides that from the client's overloads.
        return cast("openai.AsyncStream[ChatCompletionChunk]", response)

    async def _next_chunk(
        self, response: openai.AsyncStream[ChatCompletionChunk], client: openai.AsyncOpenAI
    ) -> ChatCompletionChunk | None:
        """The next chunk of ``response``; ``None`` at its end."""
        try:
            return await response.__anext__()
        except StopAsyncIteration:
            return None
        except openai.OpenAIError as exc:
            raise self._error(exc, client=client, answering=True) from None
        except ValueError:  # a data line that is not JSON
            raise BackendError(
                "The assistant's answer was cut off.",
                detail=f"The model server at {display_url(str(client.base_url))} sent "
                "a malformed reply.",
            ) from None

    async def aclose(self) -> None:
        """Close the HTTP clients. The backend stays usable: the next ``stream`` makes a new one."""
        clients = list(self._clients.items())
        self._clients = weakref.WeakKeyDictionary()
        current = asyncio.get_running_loop()
        for loop, client in clients:
            if loop is current:
                await client.close()
            elif not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(client.close(), loop)
            # A closed loop's connections are gone with it.

    # Errors ---------------------------------------------------------------------------------

    def _error(
        self, exc: Exception, *, client: openai.AsyncOpenAI, answering: bool
    ) -> BackendError:
        """A :class:`BackendError` with a plain sentence for the room's members, and the
        details (the server's address, status and message, never the key) for the log."""
        where = f"the model server at {display_url(str(client.base_url))}"
        server = where[0].upper() + where[1:]
        if isinstance(exc, openai.APITimeoutError):
            return BackendError(
                "The assistant timed out.",
                detail=f"{server} did not answer within {self.timeout:g} seconds.",
            )
        if isinstance(exc, openai.APIConnectionError):
            if answering:
                return BackendError(
                    "The assistant's answer was cut off.",
                    detail=f"The connection to {where} broke off.",
                )
            return BackendError(
                "The assistant could not be reached.",
                detail=f"Could not reach {where}: is it running?",
            )
        if isinstance(exc, openai.APIStatusError):
            detail = self._detail(exc.body)
            message = f"{server} answered HTTP {exc.status_code}" + (
                f": {detail}" if detail else "."
            )
            hint = {
                401: "Check the API key (OPENAI_API_KEY).",
                403: "Check the API key (OPENAI_API_KEY) and its permissions.",
                404: "Check the model name (PARLEY_MODEL) and the server URL (OPENAI_BASE_URL).",
                429: "The server is busy or over quota; try again later.",
            }.get(exc.status_code)
            public = "The assistant could not answer."
            if exc.status_code == 429:
                public = "The assistant is busy; try again later."
            return BackendError(public, detail=f"{message} {hint}" if hint else message)
        if isinstance(exc, openai.APIError):  # an error event in the middle of the stream
            detail = self._detail(exc.body) or self._detail({"message": exc.message})
            return BackendError(
                "The assistant failed while answering.",
                detail=f"{server} reported an error while answering"
                + (f": {detail}" if detail else "."),
            )
        return BackendError(
            "The assistant could not answer.", detail=f"The request to {where} failed."
        )

    def _detail(self, body: object) -> str:
        """The server's own error message from an error body, short and without secrets."""
        if isinstance(body, dict):
            inner = body.get("error", body)
            if isinstance(inner, dict):  # OpenAI: {"error": {"message": ...}}
                inner = inner.get("message") or inner.get("detail")
            body = inner  # Ollama: {"error": "..."}
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        if not isinstance(body, str):
            return ""
        text = " ".join(body.split())
        if text.startswith(("{", "[")):
            try:
                return self._detail(json.loads(text))
            except ValueError:
                pass
        secrets = {self.api_key or "", os.environ.get("OPENAI_API_KEY", "")}
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        text = _KEY_LIKE.sub("[redacted]", text)
        if len(text) > MAX_DETAIL_CHARS:
            text = text[: MAX_DETAIL_CHARS - 1].rstrip() + "…"
        return text.rstrip(".") + "." if text else ""
