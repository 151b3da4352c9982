"""Who may run a tool, decided when the model calls it (docs/tools.md).

A tool runs as the member whose question the answer replies to. In a shared room every
member reads what it returns, so the rule is the knowledge's (passages every member may
read): the tool's permissions and object-level check must hold for each member, and a
*personal* tool, whose result depends on who runs it, is refused outright, even in a shared
room with no other member yet (whoever joins later reads its history).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .definitions import Tool

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, _User

logger = logging.getLogger(__name__)


def tool_refusal(
    *,
    tool: Tool,
    user: _User | AnonymousUser,
    arguments: dict[str, Any],
    shared: bool,
    audience: list[_User],
) -> str | None:
    """Why ``user`` may not run ``tool`` with ``arguments`` in a room (``shared``, with
    ``audience``, its other members; a private one has none), in words for the model to
    pass on; ``None`` if they may. Reads the rights afresh: a right revoked, or an account
    deactivated, a second ago holds."""
    if shared and tool.personal:  # even alone in it: whoever joins later reads its history
        return (
            f"The tool {tool.name} is not available in a shared room: what it returns is "
            "personal to the asker. Ask in a private conversation."
        )
    if user.is_authenticated and not user.is_active:
        return "The asker's account is no longer active."
    if not _allowed(tool, user, arguments):
        return f"The asker does not have permission to use the tool {tool.name} for this."
    for member in audience:
        if not _allowed(tool, member, arguments):
            return (
                f"The tool {tool.name} is not available here: not every member of this room "
                "may see what it returns."
            )
    return None


def _allowed(tool: Tool, user: _User | AnonymousUser, arguments: dict[str, Any]) -> bool:
    if not (tool.permissions or tool.check):
        return True
    if not user.is_active:
        return False
    if tool.permissions and not user.has_perms(tool.permissions):
        return False
    if tool.check is None:
        return True
    try:
        return bool(tool.check(user, arguments))
    except Exception:  # a check that fails allows nothing
        logger.exception("the permission check of tool %s failed; refusing the call", tool.name)
        return False
