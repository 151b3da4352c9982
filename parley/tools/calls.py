"""Running the tool calls of an answer's round, as the asker (docs/tools.md).

Each call is stored first (:func:`~parley.tools.records.tool_run_open`), then run: an async
tool on the answer's loop, cancelled with the answer; a sync one on a tools thread, where
it runs to its end even if the answer stops meanwhile (Python cannot stop a thread safely,
and a half-done write is worse than a finished one), and stores its own outcome there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..backends.base import ToolCall
from ..conf import get_config
from ..models import Message, ToolRun
from ..realtime.db import database_call, tools_call
from .definitions import Tool, ToolContext, ToolError, result_text
from .records import Prepared, tool_run_finish, tool_run_open

logger = logging.getLogger(__name__)


async def tools_run(
    *,
    answer: Message,
    calls: Sequence[ToolCall],
    tools: Sequence[Tool],
    round: int,
    position: int,
) -> list[ToolRun]:
    """Run ``calls``, the model's ``round``-th round, one after another in their order
    (a later call may depend on what an earlier one did), and return their rows, finished,
    with what the model is told in each ``result``. Calls past ``MAX_CALLS_PER_ROUND`` are
    stored as invalid and not run. Cancelled (the answer stopped): the call running is
    cancelled, if async, and no later one starts."""
    offered = {tool.name: tool for tool in tools}
    limit = get_config().tools["MAX_CALLS_PER_ROUND"]
    runs = []
    for index, call in enumerate(calls):
        tool = offered.get(call.name)
        prepared = await database_call(
            tool_run_open, answer=answer, call=call, tool=tool, round=round, position=position
        )
        if index >= limit:
            run = await database_call(
                tool_run_finish,
                run=prepared.run,
                status=ToolRun.Status.INVALID,
                result=f"Not run: at most {limit} tool calls are run at a time.",
            )
        elif tool is None or prepared.arguments is None:
            run = prepared.run
        else:
            run = await _run(tool, prepared, answer=answer)
        runs.append(run)
    return runs


async def _run(tool: Tool, prepared: Prepared, *, answer: Message) -> ToolRun:
    assert prepared.arguments is not None
    kwargs = dict(prepared.arguments)
    if tool.context_parameter:
        context = ToolContext(user=prepared.user, room=answer.room.public_id, answer=answer.pk)
        kwargs[tool.context_parameter] = context
    timeout = float(get_config().tools["TIMEOUT"])
    if not tool.is_async:
        try:
            return await asyncio.wait_for(
                tools_call(_run_sync, tool, prepared.run, kwargs), timeout
            )
        except TimeoutError:
            logger.warning("tool %s of answer %s is still running", tool.name, answer.pk)
            prepared.run.result = (
                f"The tool {tool.name} did not finish within {timeout:g} seconds; whether it "
                "did what was asked is not known yet."
            )
            return prepared.run
    started = time.monotonic()
    try:
        result = result_text(await asyncio.wait_for(tool.function(**kwargs), timeout))
    except asyncio.CancelledError:
        await database_call(
            tool_run_finish,
            run=prepared.run,
            status=ToolRun.Status.CANCELLED,
            result="",
            duration=time.monotonic() - started,
        )
        raise
    except Exception as exc:
        status, result, error = _failure(tool, exc, answer=answer, timeout=timeout)
        return await database_call(
            tool_run_finish,
            run=prepared.run,
            status=status,
            result=result,
            error=error,
            duration=time.monotonic() - started,
        )
    return await database_call(
        tool_run_finish,
        run=prepared.run,
        status=ToolRun.Status.DONE,
        result=result,
        duration=time.monotonic() - started,
    )


def _run_sync(tool: Tool, run: ToolRun, kwargs: dict[str, Any]) -> ToolRun:
    """A sync tool's call and the storing of its outcome, on a tools thread."""
    started = time.monotonic()
    try:
        result = result_text(tool.function(**kwargs))
    except Exception as exc:
        status, result, error = _failure(tool, exc, answer=run.answer, timeout=None)
        return tool_run_finish(
            run=run, status=status, result=result, error=error, duration=time.monotonic() - started
        )
    return tool_run_finish(
        run=run,
        status=ToolRun.Status.DONE,
        result=result,
        duration=time.monotonic() - started,
    )


def _failure(
    tool: Tool, exc: Exception, *, answer: Message, timeout: float | None
) -> tuple[str, str, str]:
    """The status, the model's result and the audit's error for a call that raised."""
    if isinstance(exc, ToolError):
        return ToolRun.Status.FAILED, f"Error: {exc}", str(exc)
    if isinstance(exc, TimeoutError) and timeout is not None:
        message = f"The tool {tool.name} did not finish within {timeout:g} seconds."
        return ToolRun.Status.FAILED, message, message
    logger.exception("tool %s failed in answer %s", tool.name, answer.pk)
    return ToolRun.Status.FAILED, f"The tool {tool.name} failed.", f"{type(exc).__name__}: {exc}"
