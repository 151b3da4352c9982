"""Approvals of the calls of tools that change something (``confirm=True``), as rows.

A call waits ``pending`` in the database, not in a socket or a task: the answer pauses
(it stays ``streaming``, so its room's questions wait behind it, and the stale-answer watch
leaves it alone), and whoever decides, on whichever process, wins the row with one
conditional ``UPDATE`` and goes on with the answer (:mod:`parley.answers.approvals`). So
does the process whose watch finds the wait expired. Sync ORM code, run on a database
thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from ..conf import get_config
from ..models import Message, ToolGrant, ToolRun
from .definitions import ToolArgumentsError
from .registry import tools_for

if TYPE_CHECKING:
    from django.contrib.auth.models import _User

# The statuses of a call not settled yet: the round it belongs to goes on from it.
OPEN_STATUSES = frozenset({ToolRun.Status.QUEUED, ToolRun.Status.PENDING, ToolRun.Status.APPROVED})
# And with a call running: every other status is how a call ended.
UNSETTLED_STATUSES = OPEN_STATUSES | {ToolRun.Status.RUNNING}


class DecisionRefused(Exception):
    """A decision that cannot be taken: ``code`` and the sentence for the member."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Decision:
    """What a member decided about a pending call."""

    approve: bool
    arguments: dict[str, Any] | None = None  # edited, if they were
    always: bool = False  # approve this tool's calls for the asker from now on


def approval_decide(
    *, run_id: int, room_id: int, user: _User | None, decision: Decision, worker: str
) -> ToolRun:
    """Take ``user``'s ``decision`` on the pending call ``run_id`` of the room: returns the
    row, decided, whose answer the caller goes on with (now run by ``worker``). Only the
    asker decides, or a member holding ``TOOLS["APPROVER_PERMISSION"]``, read afresh; edited
    arguments must fit the tool. Raises :class:`DecisionRefused` otherwise, or when the call
    is not pending any more (decided, expired, or its answer stopped)."""
    run = (
        ToolRun.objects.select_related("answer__room", "answer__reply_to", "asker")
        .filter(pk=run_id, room_id=room_id)
        .first()
    )
    if run is None or run.status != ToolRun.Status.PENDING:
        raise DecisionRefused("not_pending", "That tool call is not waiting for a decision.")
    decider = _active(user)
    if decider is None or not _may_decide(decider, run):
        raise DecisionRefused(
            "not_allowed", "Only the member who asked, or an approver, may decide on this call."
        )
    if decision.always and decider.pk != run.asker_id:
        raise DecisionRefused(
            "not_allowed", "Only the member who asked may always allow a tool for themselves."
        )
    edited = ""
    if decision.approve and decision.arguments is not None:
        edited = _edited(run, decision.arguments)
    now = timezone.now()
    status = ToolRun.Status.APPROVED if decision.approve else ToolRun.Status.DENIED
    name = decider.get_username()
    result = "" if decision.approve else f"{name} denied this call: it was not run."
    with transaction.atomic():
        # On the row's own columns, with no join: PostgreSQL rechecks them on the row a
        # concurrent UPDATE committed (a join's columns it would take from before).
        won = ToolRun.objects.filter(
            pk=run.pk, status=ToolRun.Status.PENDING, expires_at__gt=now
        ).update(
            status=status,
            decided_by=decider,
            decided_at=now,
            approved_arguments=edited,
            result=result,
            finished_at=None if decision.approve else now,
        )
        if not won or not _answer_take(run.answer, worker=worker, now=now):
            raise DecisionRefused("not_pending", "That tool call is not waiting any more.")
        if decision.always and decision.approve:
            ToolGrant.objects.get_or_create(user=decider, tool=run.tool)
    run.status, run.decided_by, run.decided_at = status, decider, now
    run.approved_arguments, run.result = edited, result
    if not decision.approve:
        run.finished_at = now
    return run


def approvals_expire(*, worker: str) -> list[ToolRun]:
    """Deny as ``expired`` the calls whose wait for approval has ended, and return those
    this process won: it goes on with their answers (the model is told), as ``worker``."""
    now = timezone.now()
    due = ToolRun.objects.filter(
        status=ToolRun.Status.PENDING,
        expires_at__lte=now,
        answer__status=Message.Status.STREAMING,
    )
    result = f"No one approved this call within {_wait()}: it was not run."
    won = []
    for run in due.select_related("answer__room", "answer__reply_to")[:100]:
        with transaction.atomic():
            if not ToolRun.objects.filter(pk=run.pk, status=ToolRun.Status.PENDING).update(
                status=ToolRun.Status.EXPIRED, result=result, finished_at=now
            ):
                continue  # decided meanwhile, or another process expired it
            if not _answer_take(run.answer, worker=worker, now=now):
                transaction.set_rollback(True)
                continue
        run.status, run.result, run.finished_at = ToolRun.Status.EXPIRED, result, now
        won.append(run)
    return won


def approvals_cancel(*, answer: Message) -> None:
    """Close as ``cancelled`` the calls of ``answer`` not settled yet: it ended before
    they ran."""
    ToolRun.objects.filter(answer=answer, status__in=OPEN_STATUSES).update(
        status=ToolRun.Status.CANCELLED, finished_at=timezone.now()
    )


def tool_runs_orphaned(*, answer_ids: list[int]) -> None:
    """Close the calls of answers whose process died: those not run yet as ``cancelled``,
    and those it was running too, for it ran them on its own threads, gone with it
    (whether such a call finished its work is not known: its row says so)."""
    now = timezone.now()
    runs = ToolRun.objects.filter(answer_id__in=answer_ids)
    runs.filter(status__in=OPEN_STATUSES).update(status=ToolRun.Status.CANCELLED, finished_at=now)
    runs.filter(status=ToolRun.Status.RUNNING).update(
        status=ToolRun.Status.CANCELLED,
        error="The server running it stopped; whether it finished is not known.",
        finished_at=now,
    )


def answer_stop_waiting(*, answer: Message) -> list[ToolRun] | None:
    """Cancel the call ``answer`` waits on for approval, and those after it, for a stop
    pressed while it waits; returns the cancelled calls, or ``None`` if it was not waiting
    (a decision came first, and a process runs it again)."""
    with transaction.atomic():
        pending = ToolRun.objects.filter(answer=answer, status=ToolRun.Status.PENDING)
        ids = list(pending.values_list("pk", flat=True))
        if not ids or not pending.filter(pk__in=ids).update(
            status=ToolRun.Status.CANCELLED, finished_at=timezone.now()
        ):
            return None
        approvals_cancel(answer=answer)
    return list(ToolRun.objects.select_related("decided_by").filter(pk__in=ids))


def _answer_take(answer: Message, *, worker: str, now: Any) -> bool:
    """Mark ``answer`` as run by ``worker`` from now, if it still streams (``False`` if it
    ended): stamped, so that the stale-answer watch does not take it for the answer of a
    dead process before its first heartbeat."""
    if not Message.objects.filter(pk=answer.pk, status=Message.Status.STREAMING).update(
        worker=worker, updated_at=now
    ):
        return False
    answer.worker, answer.updated_at = worker, now
    return True


def _active(user: _User | None) -> _User | None:
    if user is None:
        return None
    return get_user_model()._default_manager.filter(pk=user.pk, is_active=True).first()


def _may_decide(user: _User, run: ToolRun) -> bool:
    return user.pk == run.asker_id or is_approver(user)


def is_approver(user: Any) -> bool:
    """Whether ``user`` holds ``TOOLS["APPROVER_PERMISSION"]``: they may decide on other
    members' calls (the room page shows them the buttons)."""
    permission = get_config().tools["APPROVER_PERMISSION"]
    return bool(permission) and user.has_perm(permission)


def _edited(run: ToolRun, arguments: dict[str, Any]) -> str:
    """``arguments`` as JSON, once they are known to fit the call's tool; ``""`` if they are
    the model's own (nothing was edited)."""
    try:
        tool = next((t for t in tools_for(run.answer.room.backend) if t.name == run.tool), None)
    except ImproperlyConfigured:
        tool = None  # the settings broke since: the call cannot run, as when it is gone
    if tool is None:
        raise DecisionRefused("not_pending", f"The tool {run.tool} is not offered any more.")
    text = json.dumps(arguments, ensure_ascii=False)
    try:
        edited = tool.parse(text)
    except ToolArgumentsError as exc:
        raise DecisionRefused("bad_arguments", str(exc)) from None
    try:
        unchanged = tool.parse(run.arguments) == edited
    except ToolArgumentsError:
        unchanged = False
    return "" if unchanged else text


def _wait() -> str:
    """How long a call waits for approval, in words."""
    seconds = float(get_config().tools["APPROVAL_TIMEOUT"])
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}" if minutes else f"{seconds:g} seconds"
