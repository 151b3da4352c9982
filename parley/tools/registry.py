"""The tools each backend alias offers: ``PARLEY["BACKENDS"][alias]["TOOLS"]``, a list of
dotted paths to :class:`~parley.tools.Tool` objects, loaded once per alias and process."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from ..conf import get_config
from .definitions import Tool

_loaded: dict[str, tuple[Tool, ...]] = {}


def tools_for(alias: str) -> tuple[Tool, ...]:
    """The tools the backend under ``alias`` offers its model, in the order the setting
    lists them (none if it lists none). Raises ``ImproperlyConfigured`` naming the alias
    when a path cannot be imported, names no tool, or two tools share a name."""
    try:
        return _loaded[alias]
    except KeyError:
        pass
    paths = get_config().backends.get(alias, {}).get("TOOLS", [])
    where = f"PARLEY['BACKENDS'][{alias!r}]['TOOLS']"
    tools: list[Tool] = []
    for path in paths:
        try:
            found = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{where}: {path!r} could not be imported: {exc}") from exc
        if not isinstance(found, Tool):
            raise ImproperlyConfigured(
                f"{where}: {path!r} is no tool; decorate the function with @parley.tools.tool"
            )
        if any(known.name == found.name for known in tools):
            raise ImproperlyConfigured(f"{where}: two tools are named {found.name!r}")
        tools.append(found)
    _loaded[alias] = tuple(tools)
    return _loaded[alias]


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "PARLEY":
        _loaded.clear()
