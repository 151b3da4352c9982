"""System checks (docs/configuration.md lists them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import get_config
from .knowledge.embeddings import embedder_problem
from .tools.registry import tools_for
from .usage.metering import prices_problems

# The mark of keys made for development (startproject's, and examples'), never secret.
INSECURE_KEY_PREFIX = "django-insecure-"


@checks.register(checks.Tags.compatibility)
def check_backends(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        config = get_config()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="See docs/configuration.md.", id="parley.E002")]
    errors: list[checks.CheckMessage] = []
    if "default" not in config.backends:
        errors.append(
            checks.Error(
                "PARLEY['BACKENDS'] has no 'default' alias.",
                hint="Rooms use the 'default' backend unless they name another.",
                id="parley.E001",
            )
        )
    for alias, entry in config.backends.items():
        path = entry.get("BACKEND", "")
        try:
            import_string(path)
        except ImportError as exc:
            errors.append(
                checks.Error(
                    f"PARLEY['BACKENDS'][{alias!r}]['BACKEND'] = {path!r} cannot be imported: "
                    f"{exc}",
                    hint="Install the backend's extra (e.g. pip install 'parley[openai]') "
                    "or correct the dotted path.",
                    id="parley.E005",
                )
            )
            continue
        errors.extend(_check_tools(alias, import_string(path)))
    return errors


def _check_tools(alias: str, backend: type) -> list[checks.CheckMessage]:
    """The alias's tools load (E006), and its backend can call them (W005)."""
    try:
        tools = tools_for(alias)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="See docs/tools.md.", id="parley.E006")]
    if tools and not getattr(backend, "calls_tools", False):
        return [
            checks.Warning(
                f"PARLEY['BACKENDS'][{alias!r}] lists tools, but {backend.__qualname__} "
                "does not call tools: its answers never use them.",
                hint="Give the tools to an alias of a backend that calls them, such as "
                "parley.backends.openai.OpenAIBackend (docs/tools.md).",
                id="parley.W005",
            )
        ]
    return []


@checks.register(checks.Tags.compatibility)
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    backend = layers.get("default", {}).get("BACKEND", "")
    if not backend:
        return [
            checks.Error(
                "CHANNEL_LAYERS has no 'default' layer: rooms cannot broadcast.",
                hint="Use channels_redis.pubsub.RedisPubSubChannelLayer in production.",
                id="parley.E003",
            )
        ]
    if backend.endswith("InMemoryChannelLayer") and not settings.DEBUG:
        return [
            checks.Warning(
                "The in-memory channel layer is in use with DEBUG=False: rooms are not shared "
                "between server processes, and a restart forgets every socket.",
                hint="Set REDIS_URL (channels_redis.pubsub.RedisPubSubChannelLayer).",
                id="parley.W001",
            )
        ]
    return []


@checks.register(checks.Tags.compatibility)
def check_knowledge(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        knowledge = get_config().knowledge
    except ImproperlyConfigured:
        return []  # reported by check_backends as parley.E002
    found: list[checks.CheckMessage] = [
        checks.Warning(
            f"PARLEY['KNOWLEDGE']['FOLDERS'] names {str(folder)!r}, which does not exist.",
            hint="Correct the path, or remove it; parley_index skips it.",
            id="parley.W002",
        )
        for folder in knowledge["FOLDERS"]
        if not Path(folder).exists()
    ]
    problem = embedder_problem(knowledge["EMBEDDINGS"])
    if problem:
        found.append(
            checks.Warning(
                f"Dense retrieval is off: {problem}.",
                hint="Retrieval works on BM25 alone meanwhile; set "
                "PARLEY['KNOWLEDGE']['EMBEDDINGS'] to None to say so.",
                id="parley.W004",
            )
        )
    return found


@checks.register(checks.Tags.security)
def check_allowed_hosts(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if "*" not in settings.ALLOWED_HOSTS:
        return []
    return [
        checks.Warning(
            "ALLOWED_HOSTS contains '*': any Host header is accepted, so a page of any name "
            "that resolves to this server (DNS rebinding) counts as the site's own origin "
            "for room sockets.",
            hint="List the site's host names. Room sockets still refuse Origins that differ "
            "from the Host the handshake names (docs/security.md).",
            id="parley.W003",
        )
    ]


@checks.register(checks.Tags.compatibility)
def check_prices(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Prices that cannot be read would leave answers without their cost."""
    hint = 'See docs/operations.md, "Usage and quotas".'
    return [checks.Error(problem, hint=hint, id="parley.E007") for problem in prices_problems()]


@checks.register(checks.Tags.security)
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    key = str(getattr(settings, "SECRET_KEY", "") or "")
    if settings.DEBUG or not key.startswith(INSECURE_KEY_PREFIX):
        return []
    return [
        checks.Error(
            f"SECRET_KEY starts with {INSECURE_KEY_PREFIX!r} while DEBUG is off: a published "
            "development key signs sessions and room socket tickets, so anyone who knows it "
            "can open any member's room socket.",
            hint="Set SECRET_KEY to a long random value of this deployment's own.",
            id="parley.E004",
        )
    ]
