"""The client address a visitor's limits count by, from a socket's scope or a request.

Behind a proxy every connection comes from the proxy: ``VISITORS["CLIENT_IP_HEADER"]`` names
the header the proxy writes the client's address in. Only its last entry is taken, the one
the proxy itself appended: the entries before it are whatever the client sent.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ..conf import get_config


def _last_entry(value: str) -> str:
    return value.rsplit(",", 1)[-1].strip()


def client_address(scope: dict[str, Any]) -> str:
    """The client address of an ASGI connection."""
    header = get_config().visitors["CLIENT_IP_HEADER"]
    if header:
        name = header.lower().encode("latin-1")
        values = [value for key, value in scope.get("headers", ()) if key == name]
        if values:
            return _last_entry(values[-1].decode("latin-1"))
    client = scope.get("client")
    return str(client[0]) if client else ""


def request_address(request: HttpRequest) -> str:
    """The client address of an HTTP request, by the same rule."""
    header = get_config().visitors["CLIENT_IP_HEADER"]
    if header:
        value = request.META.get("HTTP_" + header.upper().replace("-", "_"))
        if value:
            return _last_entry(str(value))
    return str(request.META.get("REMOTE_ADDR", ""))
