"""Running the tool calls of an answer's round, as the asker (docs/tools.md).

Each call is stored first (:func:`~parley.tools.records.tool_runs_open`), checked when its
turn comes (:func:`~parley.tools.records.tool_run_prepare`: it may wait for approval
there), then run: an async
tool on the answer's loop, cancelled with the answer; a sync one on a tools thread, where
it runs to its end even if the answer stops meanwhile (Python cannot stop a thread safely,
and a half-done write is worse than a finished one), and stores its own outcome there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..conf import get_config
from ..models import Message, ToolRun
from ..realtime.db import database_call, tools_call
from .approvals import OPEN_STATUSES
from .definitions import Tool, ToolContext, ToolError, result_text
from .records import Prepared, tool_run_finish, tool_run_prepare

logger = logging.getLogger(__name__)


async def tools_run(
    *,
    answer: Message,
    runs: Sequence[ToolRun],
    tools: Sequence[Tool],
    on_step: Callable[[ToolRun], Awaitable[None]] | None = None,
) -> bool:
    """Run the calls of a round of ``answer``'s (its rows, from
    :func:`~parley.tools.records.tool_runs_open`) one after another in their order (a later
    call may depend on what an earlier one did), skipping those settled already; each row
    ends with what the model is told in its ``result``. Calls past ``MAX_CALLS_PER_ROUND``
    are stored as invalid and not run. Returns ``False`` when a call waits for approval:
    the round stops there, and goes on from its rows once it is decided. ``on_step`` is
    awaited with each call as it ends or starts to wait. Cancelled (the answer stopped):
    the call running is cancelled, if async, and no later one starts."""
    offered = {tool.name: tool for tool in tools}
    limit = get_config().tools["MAX_CALLS_PER_ROUND"]
    for index, run in enumerate(runs):
        if run.status not in OPEN_STATUSES:
            continue
        if index >= limit:
            await database_call(
                tool_run_finish,
                run=run,
                status=ToolRun.Status.INVALID,
                result=f"Not run: at most {limit} tool calls are run at a time.",
            )
        else:
            tool = offered.get(run.tool)
            prepared = await database_call(tool_run_prepare, run=run, tool=tool)
            if tool is not None and prepared.arguments is not None:
                await _run(tool, prepared, answer=answer)
        if on_step is not None:
            await on_step(run)
        if run.status == ToolRun.Status.PENDING:
            return False
    return True


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
            prepared.run.result = unknown_outcome(tool.name)
            return prepared.run
    started = time.monotonic()
    try:
        result = _told(prepared.run, await asyncio.wait_for(tool.function(**kwargs), timeout))
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


def unknown_outcome(name: str) -> str:
    """What the model is told of a sync call of ``name`` still running past its timeout."""
    timeout = float(get_config().tools["TIMEOUT"])
    return (
        f"The tool {name} did not finish within {timeout:g} seconds; whether it did what "
        "was asked is not known yet."
    )


def _run_sync(tool: Tool, run: ToolRun, kwargs: dict[str, Any]) -> ToolRun:
    """A sync tool's call and the storing of its outcome, on a tools thread."""
    started = time.monotonic()
    try:
        result = _told(run, tool.function(**kwargs))
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


def _told(run: ToolRun, value: Any) -> str:
    """What the model is told a call returned: ``value`` as text, after the arguments it
    ran with if the approver changed the model's."""
    text = result_text(value)
    if not run.approved_arguments:
        return text
    return f"The approver changed the arguments; it ran with {run.approved_arguments}.\n{text}"


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
