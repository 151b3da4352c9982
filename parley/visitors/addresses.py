"""The client address a visitor's limits count by, from a socket's scope or a request.

Behind a proxy every connection comes from the proxy: ``VISITORS["CLIENT_IP_HEADER"]`` names
the header the proxy writes the client's address in. Only its last entry is taken, the one
the proxy itself appended: the entries before it are whatever the client sent.

An IPv6 address counts as its /64: one network gets a /64 (or more) to pick addresses from.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.http import HttpRequest

from ..conf import get_config


def _last_entry(value: str) -> str:
    return value.rsplit(",", 1)[-1].strip()


def _grouped(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def client_address(scope: dict[str, Any]) -> str:
    """The client address of an ASGI connection."""
    header = get_config().visitors["CLIENT_IP_HEADER"]
    if header:
        name = header.lower().encode("latin-1")
        values = [value for key, value in scope.get("headers", ()) if key == name]
        if values:
            return _grouped(_last_entry(values[-1].decode("latin-1")))
    client = scope.get("client")
    return _grouped(str(client[0])) if client else ""


def request_address(request: HttpRequest) -> str:
    """The client address of an HTTP request, by the same rule."""
    header = get_config().visitors["CLIENT_IP_HEADER"]
    if header:
        value = request.META.get("HTTP_" + header.upper().replace("-", "_"))
        if value:
            return _grouped(_last_entry(str(value)))
    return _grouped(str(request.META.get("REMOTE_ADDR", "")))
