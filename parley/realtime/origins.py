"""Which pages may open room sockets and ask the widget's endpoint: the site's own origin
(scheme, host and port, as Django's CSRF check compares them), origins listed as trusted
(``CSRF_TRUSTED_ORIGINS``, ``PARLEY["ALLOWED_ORIGINS"]``), and origins listed only to embed
the chat (``PARLEY["EMBED_ORIGINS"]``), whose pages chat as visitors and nothing more.
Pure functions of a handshake's scope or an ``Origin`` header, and the settings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from ..conf import get_config

# What a browser puts in Origin; anything else (ftp:, file:, chrome-extension:, "null") is
# not a page of a web site and is refused.
WEB_SCHEMES = ("http", "https")


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the handshake of ``scope`` comes from an origin the site trusts, or one that
    may embed the chat (:func:`origin_embeds_only` tells them apart)."""
    headers = _headers(scope)
    return _trusted(scope, headers) or origin_embedding(headers.get(b"origin", ""))


def origin_embeds_only(scope: dict[str, Any]) -> bool:
    """Whether the handshake of ``scope`` comes from a page that may only embed the chat:
    then only a visitor's ticket opens the socket, never a user's session or ticket."""
    headers = _headers(scope)
    return origin_embedding(headers.get(b"origin", "")) and not _trusted(scope, headers)


def _trusted(scope: dict[str, Any], headers: dict[bytes, str]) -> bool:
    """Whether the handshake comes from the site's own origin or a trusted one."""
    origin = _origin_key(headers.get(b"origin", ""))
    if origin is None:
        return False
    site = _site_origin(scope, headers)
    return (site is not None and origin == site) or _trusted_listed(headers[b"origin"], origin)


def origin_listed(raw: str) -> bool:
    """Whether the origin ``raw`` (an ``Origin`` header) is one of another site that
    ``CSRF_TRUSTED_ORIGINS`` or ``PARLEY["ALLOWED_ORIGINS"]`` lists."""
    origin = _origin_key(raw)
    return origin is not None and _trusted_listed(raw, origin)


def _trusted_listed(raw: str, origin: tuple[str, str, int]) -> bool:
    return _listed(raw, origin, [*settings.CSRF_TRUSTED_ORIGINS, *get_config().allowed_origins])


def origin_embedding(raw: str) -> bool:
    """Whether the origin ``raw`` is listed in ``PARLEY["EMBED_ORIGINS"]``."""
    embedding = get_config().embed_origins
    if not embedding:  # the common case, on every handshake: nothing to parse
        return False
    origin = _origin_key(raw)
    return origin is not None and _listed(raw, origin, embedding)


def origin_same(raw: str, own: str) -> bool:
    """Whether the origin ``raw`` is ``own`` (``"https://host[:port]"``), spelt alike or not."""
    origin = _origin_key(raw)
    return origin is not None and origin == _origin_key(own)


def _headers(scope: dict[str, Any]) -> dict[bytes, str]:
    """The handshake's headers by name; the last of a repeated one counts (as Channels'
    validator reads Origin)."""
    return {name: value.decode("latin1") for name, value in scope.get("headers", ())}


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) origin, the port made explicit; ``None`` for
    anything else (no header, ``null``, ``file://``, ``http://[::1``, a path or a user)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in WEB_SCHEMES or not parts.hostname or "@" in parts.netloc:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def _site_origin(scope: dict[str, Any], headers: dict[bytes, str]) -> tuple[str, str, int] | None:
    """The origin the handshake was made to, as Django's ``request.get_host()`` and
    ``is_secure()`` see it; ``None`` when its host is not in ``ALLOWED_HOSTS``."""
    host = headers.get(b"host", "")
    if settings.USE_X_FORWARDED_HOST and b"x-forwarded-host" in headers:
        host = headers[b"x-forwarded-host"]
    if not host and scope.get("server"):
        server_host, server_port = scope["server"]
        host = f"{server_host}:{server_port}"
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's get_host() allows
    if not domain or not validate_host(domain, allowed):
        return None
    scheme = "https" if _secure(scope, headers) else "http"
    return _origin_key(f"{scheme}://{host}")


def _secure(scope: dict[str, Any], headers: dict[bytes, str]) -> bool:
    """Whether the handshake came over TLS, trusting the proxy's header as Django does."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name, secure_value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        if header in headers:
            return headers[header].split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "wss"


def _listed(raw: str, origin: tuple[str, str, int], trusted: Iterable[str]) -> bool:
    """Whether ``origin`` is one of ``trusted`` (``CSRF_TRUSTED_ORIGINS`` syntax: exact
    origins, or ``scheme://*.domain`` for a domain's subdomains)."""
    netloc = urlsplit(raw).netloc.lower()
    for entry in trusted:
        if "*" in entry:
            parts = urlsplit(entry)
            if parts.scheme.lower() == origin[0] and is_same_domain(
                netloc, parts.netloc.lower().lstrip("*")
            ):
                return True
        elif _origin_key(entry) == origin:
            return True
    return False
