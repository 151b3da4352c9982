"""The wire form of a tool call, as the room's members see it in the answer."""

from __future__ import annotations

from typing import Any

from ..models import ToolRun

# The characters of a call's arguments and result a member is shown; the audit keeps more.
SHOWN_CHARS = 500


def tool_run_payload(run: ToolRun) -> dict[str, Any]:
    """``run`` for the room: which tool, its arguments and a short result, where in the
    answer's text it came (``position``), and its ``status``."""
    return {
        "id": run.pk,
        "tool": run.tool,
        "arguments": _short(run.arguments),
        "status": run.status,
        "result": _short(run.result),
        "round": run.round,
        "position": run.position,
    }


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"
