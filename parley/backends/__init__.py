"""Assistant backends, chosen by alias from ``PARLEY["BACKENDS"]`` like Django's ``CACHES``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from ..conf import get_config
from .base import (
    AssistantBackend,
    AssistantRequest,
    BackendEvent,
    Finish,
    Model,
    Passage,
    TextDelta,
    ToolCall,
    ToolRound,
    ToolSpec,
    Turn,
    Usage,
)

__all__ = [
    "AssistantBackend",
    "AssistantRequest",
    "BackendEvent",
    "Finish",
    "Model",
    "Passage",
    "TextDelta",
    "ToolCall",
    "ToolRound",
    "ToolSpec",
    "Turn",
    "Usage",
    "backends",
    "get_backend",
]


class BackendHandler:
    """Loads each configured backend lazily, once per alias and process."""

    def __init__(self) -> None:
        self._instances: dict[str, AssistantBackend] = {}

    def __getitem__(self, alias: str) -> AssistantBackend:
        try:
            return self._instances[alias]
        except KeyError:
            pass
        config = get_config().backends
        if alias not in config:
            raise ImproperlyConfigured(
                f"PARLEY['BACKENDS'] has no alias {alias!r} (known: {', '.join(config) or 'none'})"
            )
        entry = config[alias]
        path = entry.get("BACKEND", "")
        try:
            cls = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"PARLEY['BACKENDS'][{alias!r}]['BACKEND'] = {path!r} could not be imported: {exc}"
            ) from exc
        instance: AssistantBackend = cls(**entry.get("OPTIONS", {}))
        self._instances[alias] = instance
        return instance

    def reset(self) -> None:
        """Forget loaded instances (settings changed). Their clients are left to the GC."""
        self._instances.clear()


backends = BackendHandler()


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    # As Channels' ChannelLayerManager does: backends configured anew are loaded anew.
    if setting == "PARLEY":
        backends.reset()


def get_backend(alias: str = "default") -> AssistantBackend:
    """The backend instance configured under ``alias``."""
    return backends[alias]
