"""Tools for the tests, as a site would write them over its own data."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Annotated, Any, Literal

from pydantic import Field

from parley.models import Room
from parley.tools import ToolContext, ToolError, tool


def offering(base_url: str, *names: str) -> dict[str, Any]:
    """A backend alias on the fake model server at ``base_url`` offering the tools of this
    module named ``names``."""
    return {
        "BACKEND": "parley.backends.openai.OpenAIBackend",
        "OPTIONS": {"base_url": base_url, "model": "m", "timeout": 10},
        "TOOLS": [f"tests.tools.sample.{name}" for name in names],
    }


# What the tools were called with, in order: a tool that was refused never appears here.
called: list[tuple[str, dict[str, Any]]] = []

# Set by a test to let slow_write finish; it writes once it is set.
release = threading.Event()


@tool
def order_status(
    number: Annotated[int, Field(ge=1, description="The order's number.")],
    detail: Literal["short", "full"] = "short",
) -> dict[str, Any]:
    """Look up the status of one of the shop's orders by its number.

    This second paragraph is for the site's developers, not the model."""
    called.append(("order_status", {"number": number, "detail": detail}))
    if number == 404:
        raise ToolError("There is no order numbered 404.")
    return {"number": number, "status": "shipped"}


@tool(permissions="parley.view_toolrun")
def audit_size(context: ToolContext) -> int:
    """How many tool calls the audit holds."""
    called.append(("audit_size", {"user": context.user.get_username()}))
    return 7


@tool(personal=True)
def my_rooms(context: ToolContext) -> list[str]:
    """The titles of the rooms the asker is a member of."""
    called.append(("my_rooms", {}))
    return sorted(Room.objects.filter(members=context.user).values_list("title", flat=True))


def _own_room(user: Any, arguments: dict[str, Any]) -> bool:
    return Room.objects.filter(title=arguments["title"], owner=user).exists()


@tool(check=_own_room)
def room_size(title: str) -> int:
    """How many messages a room the asker owns holds."""
    called.append(("room_size", {"title": title}))
    return 3


def _broken_check(user: Any, arguments: dict[str, Any]) -> bool:
    raise RuntimeError("the check itself is broken")


@tool(check=_broken_check)
def guarded() -> str:
    """A tool whose permission check fails."""
    called.append(("guarded", {}))
    return "ran"


@tool
def broken() -> str:
    """A tool with a bug."""
    called.append(("broken", {}))
    raise RuntimeError("disk on fire")


@tool
def huge() -> str:
    """A tool that returns far too much."""
    return "x" * 100_000


@tool
async def wait(seconds: float) -> str:
    """Wait, asynchronously."""
    called.append(("wait", {"seconds": seconds}))
    await asyncio.sleep(seconds)
    return "waited"


@tool
def slow_write(title: str) -> str:
    """Rename the shop's first room, slowly, once the test releases it."""
    called.append(("slow_write", {"title": title}))
    release.wait(10)
    time.sleep(0.05)
    Room.objects.filter(pk=Room.objects.order_by("pk").values("pk")[:1]).update(title=title)
    return "renamed"


@tool(confirm=True, check=_own_room)
def rename_room(title: str, new_title: Annotated[str, Field(min_length=1, max_length=200)]) -> str:
    """Rename a room the asker owns. Changes the site: each call waits for approval."""
    called.append(("rename_room", {"title": title, "new_title": new_title}))
    Room.objects.filter(title=title).update(title=new_title)
    return f"Renamed {title!r} to {new_title!r}."


@tool(confirm=True)
def pin(text: str) -> str:
    """Pin a note to the room's board. Changes the site: each call waits for approval."""
    called.append(("pin", {"text": text}))
    return f"Pinned: {text}"
