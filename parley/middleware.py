"""Middleware a host project may install: a Content-Security-Policy on every response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse


def content_security_policy(request: HttpRequest) -> str:
    """Parley's policy for a response to ``request``: scripts, styles and connections only
    from this origin, plus the room socket on this host; no inline code, no framing."""
    try:
        host = request.get_host()
    except DisallowedHost:  # the 400 page for a foreign Host: nothing but 'self'
        socket = ""
    else:
        # A page seen as plain http may still reach the browser over https (a proxy
        # without SECURE_PROXY_SSL_HEADER): allow the secure socket as well.
        socket = f" wss://{host}" if request.is_secure() else f" ws://{host} wss://{host}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self'{socket}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
        ]
    )


def add_content_security_policy(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Give ``response`` Parley's policy unless it has one of its own."""
    if "Content-Security-Policy" not in response:
        response["Content-Security-Policy"] = content_security_policy(request)
    return response


class ContentSecurityPolicyMiddleware:
    """Send Parley's Content-Security-Policy with every response, error pages (404, 500,
    400 for a foreign Host), redirects and JSON included; Parley's own views send it even
    without this middleware. Install it first in ``MIDDLEWARE``, so that responses made by
    the other middleware carry it too."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.__acall__(request)
        return add_content_security_policy(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return add_content_security_policy(request, await self.get_response(request))
