"""The wire form of a tool call, as the room's members see it in the answer."""

from __future__ import annotations

from typing import Any

from ..models import ToolRun

# The characters of a call's arguments and result a member is shown; the audit keeps more.
SHOWN_CHARS = 500
# A call waiting for approval is shown whole, to be read before it is approved: longer
# arguments are refused (parley.tools.records).
APPROVAL_SHOWN_CHARS = 4000


def tool_run_payload(run: ToolRun) -> dict[str, Any]:
    """``run`` for the room: which tool, its arguments and a short result, where in the
    answer's text it came (``position``), and its ``status``; for a call that waits for
    approval, its arguments whole (``APPROVAL_SHOWN_CHARS`` at most), until when it waits
    (``expires_at``) and who asked (``asker``); for a decided one, who decided, and the
    arguments it ran with if they were edited."""
    pending = run.status == ToolRun.Status.PENDING
    payload: dict[str, Any] = {
        "id": run.pk,
        "tool": run.tool,
        "arguments": run.arguments if pending else _short(run.arguments),
        "status": run.status,
        "result": _short(run.result),
        "round": run.round,
        "position": run.position,
    }
    if pending and run.expires_at is not None:
        payload["expires_at"] = run.expires_at.isoformat()
        payload["asker"] = run.asker_id
    if run.decided_by_id is not None:
        decider = run.decided_by
        payload["decided_by"] = decider.get_username() if decider is not None else None
        payload["always"] = run.by_grant
    if run.approved_arguments:
        payload["approved_arguments"] = _short(run.approved_arguments)
    return payload


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"
