"""Tools: functions of the site's own code that the assistant calls, as the asker, with the
asker's Django permissions (docs/tools.md).

A site makes a function a tool with :func:`tool` and lists it under its backend alias::

    PARLEY = {"BACKENDS": {"default": {..., "TOOLS": ["shop.tools.order_status"]}}}
"""

from __future__ import annotations

from .definitions import Tool, ToolContext, ToolError, tool

__all__ = ["Tool", "ToolContext", "ToolError", "tool"]
