"""The tool calls' rows (:class:`parley.models.ToolRun`): opened ``queued`` when the model
asks, checked before each runs, finished when the tool returns. Sync ORM code, run on a
database thread; the approvals of these rows are in :mod:`parley.tools.approvals`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import timezone

from ..backends.base import ToolCall
from ..conf import get_config
from ..models import Message, Room, ToolGrant, ToolRun
from ..rooms.selectors import room_members
from .access import tool_refusal
from .definitions import Tool, ToolArgumentsError
from .payloads import APPROVAL_SHOWN_CHARS

if TYPE_CHECKING:
    from django.contrib.auth.models import _User


@dataclass(frozen=True)
class Prepared:
    """A call ready to run (``arguments`` validated, ``user`` who it runs as), or not to run
    now (``arguments`` is ``None``): settled (the row says why, in its ``result``), or
    waiting for approval (its status is ``pending``)."""

    run: ToolRun
    arguments: dict[str, Any] | None
    user: _User | AnonymousUser


def tool_runs_open(
    *, answer: Message, calls: Sequence[ToolCall], round: int, text: str
) -> list[ToolRun]:
    """Store the calls that ``answer``'s model made in its ``round``-th round, after
    ``text``, as ``queued``: all of them at once, with the text, so that the answer can go
    on from its rows, on any process, when a call of the round waits for approval."""
    asker = _asker(answer)
    position = len(text)
    runs = [
        ToolRun(
            answer=answer,
            room_id=answer.room_id,
            asker=asker if asker.is_authenticated else None,
            call_id=call.id[:100],
            tool=call.name[:64],
            arguments=call.arguments,
            round=round,
            position=position,
            status=ToolRun.Status.QUEUED,
        )
        for call in calls
    ]
    with transaction.atomic():
        ToolRun.objects.bulk_create(runs)  # their ids set: each is told to the room by id
        Message.objects.filter(pk=answer.pk).update(text=text, updated_at=timezone.now())
    answer.text = text
    return runs


def tool_run_prepare(*, run: ToolRun, tool: Tool | None) -> Prepared:
    """Decide whether the ``queued`` or ``approved`` call ``run`` may run now: a tool the
    answer offers, arguments that fit it (as the approver edited them, if they did), rights
    that allow it, read now; and for a tool that changes something, an approval: the
    asker's "always allow", or a wait (``pending``) until a member decides (docs/tools.md)."""
    user = _asker(run.answer)
    approved = run.status == ToolRun.Status.APPROVED
    arguments: dict[str, Any] | None = None
    if tool is None:
        run.status, run.result = ToolRun.Status.INVALID, f"There is no tool named {run.tool!r}."
    else:
        try:
            arguments = tool.parse(run.approved_arguments or run.arguments)
        except ToolArgumentsError as exc:
            run.status, run.result = ToolRun.Status.INVALID, str(exc)
    if tool is not None and arguments is not None:
        refusal = _refusal(tool=tool, user=user, room=run.answer.room, arguments=arguments)
        if refusal:
            run.status, run.result, arguments = ToolRun.Status.REFUSED, refusal, None
    if tool is not None and arguments is not None and tool.confirm and not approved:
        if not user.is_authenticated:
            run.status, run.result, arguments = ToolRun.Status.REFUSED, _NO_VISITORS, None
        elif len(run.arguments) > APPROVAL_SHOWN_CHARS:  # no one may approve what they cannot read
            run.status, run.result, arguments = ToolRun.Status.INVALID, _TOO_LONG, None
        elif ToolGrant.objects.filter(user=user, tool=tool.name).exists():
            run.by_grant, run.decided_by, run.decided_at = True, user, timezone.now()
        else:
            timeout = get_config().tools["APPROVAL_TIMEOUT"]
            run.status = ToolRun.Status.PENDING
            run.expires_at = timezone.now() + timedelta(seconds=timeout)
            run.save()
            return Prepared(run=run, arguments=None, user=user)
    if arguments is None:
        run.finished_at = timezone.now()
    else:
        run.status = ToolRun.Status.RUNNING
    run.save()
    return Prepared(run=run, arguments=arguments, user=user)


_TOO_LONG = (
    f"The arguments are too long to be shown for approval (at most {APPROVAL_SHOWN_CHARS} "
    "characters): nothing was run."
)
_NO_VISITORS = (
    "This tool changes something and needs the asker's approval, which a visitor who is not "
    "logged in cannot give. Ask them to log in."
)


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
    shared = room.kind == Room.Kind.SHARED
    audience: list[_User] = []
    if shared:
        members = room_members(room=room)
        if not any(member.pk == user.pk for member in members):
            return "The asker is no longer a member of this room."
        audience = [member for member in members if member.pk != user.pk]
    return tool_refusal(tool=tool, user=user, arguments=arguments, shared=shared, audience=audience)


def tool_rounds(*, answer: Message) -> list[list[ToolRun]]:
    """The rows of ``answer``'s tool calls, round by round, each in the order made."""
    rounds: dict[int, list[ToolRun]] = {}
    for run in ToolRun.objects.filter(answer=answer).select_related("decided_by"):
        run.answer = answer
        rounds.setdefault(run.round, []).append(run)
    return [rounds[number] for number in sorted(rounds)]


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
