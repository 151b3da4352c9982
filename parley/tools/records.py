"""The tool calls' rows (:class:`parley.models.ToolRun`): opened when the model asks,
finished when the tool returns. Sync ORM code, run on a database thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from ..backends.base import ToolCall
from ..conf import get_config
from ..models import Message, Room, ToolRun
from ..rooms.selectors import room_members
from .access import tool_refusal
from .definitions import Tool, ToolArgumentsError

if TYPE_CHECKING:
    from django.contrib.auth.models import _User


@dataclass(frozen=True)
class Prepared:
    """A call ready to run (``arguments`` validated, ``user`` who it runs as) or settled
    already (``arguments`` is ``None``: the row says why, in its ``result``)."""

    run: ToolRun
    arguments: dict[str, Any] | None
    user: _User | AnonymousUser


def tool_run_open(
    *, answer: Message, call: ToolCall, tool: Tool | None, round: int, position: int
) -> Prepared:
    """Store the call that ``answer``'s model made in its ``round``-th round, after
    ``position`` characters of its text, and decide whether it may run: a tool the answer
    was offered, arguments that fit it, and rights that allow it, read now."""
    user = _asker(answer)
    run = ToolRun(
        answer=answer,
        room_id=answer.room_id,
        asker=user if user.is_authenticated else None,
        call_id=call.id[:100],
        tool=call.name[:64],
        arguments=call.arguments,
        round=round,
        position=position,
    )
    arguments: dict[str, Any] | None = None
    if tool is None:
        run.status, run.result = ToolRun.Status.INVALID, f"There is no tool named {call.name!r}."
    else:
        try:
            arguments = tool.parse(call.arguments)
        except ToolArgumentsError as exc:
            run.status, run.result = ToolRun.Status.INVALID, str(exc)
    if tool is not None and arguments is not None:
        refusal = _refusal(tool=tool, user=user, room=answer.room, arguments=arguments)
        if refusal:
            run.status, run.result, arguments = ToolRun.Status.REFUSED, refusal, None
    if arguments is None:
        run.finished_at = timezone.now()
    run.save()
    return Prepared(run=run, arguments=arguments, user=user)


def _asker(answer: Message) -> _User | AnonymousUser:
    """The author of the question ``answer`` replies to, read afresh (an inactive user's
    rights are none); an ``AnonymousUser`` for a visitor's question, or none at all."""
    question = answer.reply_to
    author_id = question.author_id if question is not None else None
    if author_id is None:
        return AnonymousUser()
    user = get_user_model()._default_manager.filter(pk=author_id).first()
    return user if user is not None else AnonymousUser()


def _refusal(
    *, tool: Tool, user: _User | AnonymousUser, room: Room, arguments: dict[str, Any]
) -> str | None:
    audience: list[_User] = []
    if room.kind == Room.Kind.SHARED:
        members = room_members(room=room)
        if not any(member.pk == user.pk for member in members):
            return "The asker is no longer a member of this room."
        audience = [member for member in members if member.pk != user.pk]
    return tool_refusal(tool=tool, user=user, arguments=arguments, audience=audience)


def tool_run_finish(
    *, run: ToolRun, status: str, result: str, error: str = "", duration: float | None = None
) -> ToolRun:
    """Store how ``run`` ended: ``result`` is what the model is sent (cut to
    ``TOOLS["MAX_RESULT_CHARS"]``), ``error`` what the tool raised, for the audit."""
    run.status = status
    run.result = result_cut(result)
    run.error = error
    run.duration = duration
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "result", "error", "duration", "finished_at"])
    return run


def result_cut(text: str) -> str:
    """``text`` cut to ``TOOLS["MAX_RESULT_CHARS"]``, saying so at its end."""
    limit = get_config().tools["MAX_RESULT_CHARS"]
    if len(text) <= limit:
        return text
    note = f"… [cut: {len(text) - limit} more characters]"
    return text[: max(limit - len(note), 0)] + note
