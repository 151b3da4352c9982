"""The WebSocket stack Parley asks host projects to use (parley.routing)."""

from __future__ import annotations

import inspect

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from django.test import Client
from django.urls import path

from parley.realtime.routing import (
    OriginCheck,
    socket_path,
    websocket_application,
    websocket_urlpatterns,
)
from parley.testing import RoomClient


async def app(scope, receive, send):
    pass


def websocket_scope(*origins: bytes, host: bytes = b"chat.example.com", **more) -> dict:
    headers = [(b"host", host)] if host else []
    headers += [(b"origin", origin) for origin in origins]
    return {"type": "websocket", "scheme": "ws", "headers": headers, **more}


def admitted(scope: dict) -> bool:
    result = OriginCheck(app)(scope, None, None)
    allowed = result.cr_code is app.__code__
    result.close()
    return allowed


@pytest.fixture
def site(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com", ".example.org"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.PARLEY = {}
    settings.SECURE_PROXY_SSL_HEADER = None
    settings.USE_X_FORWARDED_HOST = False
    return settings


@pytest.mark.parametrize(
    "origins, allowed",
    [
        ((b"http://chat.example.com",), True),
        ((b"HTTP://Chat.Example.com:80",), True),  # the same origin, spelt otherwise
        ((b"https://chat.example.com",), False),  # the page is http: another origin
        ((b"http://chat.example.com:8080",), False),  # another port of the same host
        ((b"ftp://chat.example.com",), False),
        ((b"file://chat.example.com",), False),
        ((b"chrome-extension://chat.example.com",), False),
        ((b"http://user@chat.example.com",), False),
        ((b"http://evil.example",), False),
        ((b"http://chat.example.com.evil.example",), False),
        ((b"null",), False),
        ((b"http://[::1",), False),  # no URL: refused, not an error
        ((), False),
        ((b"http://evil.example", b"http://chat.example.com"), True),  # the last counts
        ((b"http://chat.example.com", b"http://evil.example"), False),
    ],
)
def test_origin_must_be_the_sites_own_scheme_host_and_port(site, origins, allowed):
    assert admitted(websocket_scope(*origins)) is allowed


def test_the_host_must_be_allowed_and_wss_means_https(site):
    assert admitted(websocket_scope(b"http://www.example.org", host=b"www.example.org"))
    assert not admitted(websocket_scope(b"http://evil.example", host=b"evil.example"))
    secure = websocket_scope(b"https://chat.example.com", scheme="wss")
    assert admitted(secure)
    assert not admitted(websocket_scope(b"http://chat.example.com", scheme="wss"))
    # No Host header: the server's address stands in, as for Django's get_host().
    no_host = websocket_scope(b"http://chat.example.com:8000", host=b"")
    assert admitted({**no_host, "server": ("chat.example.com", 8000)})


def test_allowed_hosts_star_still_refuses_foreign_origins(site):
    site.ALLOWED_HOSTS = ["*"]
    assert admitted(websocket_scope(b"http://chat.example.com"))
    for origin in (b"http://evil.example", b"null", b"file://", b"ftp://chat.example.com"):
        assert not admitted(websocket_scope(origin)), origin
    assert not admitted(websocket_scope())


def test_the_proxy_header_decides_the_scheme_as_for_django(site):
    site.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [(b"x-forwarded-proto", b"https")]
    scope = websocket_scope(b"https://chat.example.com")
    assert admitted({**scope, "headers": scope["headers"] + proxied})
    assert not admitted(websocket_scope(b"https://chat.example.com"))  # no header: plain ws
    scope = websocket_scope(b"http://chat.example.com")
    assert not admitted({**scope, "headers": scope["headers"] + proxied})
    site.USE_X_FORWARDED_HOST = True
    scope = websocket_scope(b"http://www.example.org", host=b"10.0.0.5:8000")
    assert admitted(
        {**scope, "headers": scope["headers"] + [(b"x-forwarded-host", b"www.example.org")]}
    )


def test_trusted_origins_are_admitted_exactly_or_by_subdomain(site):
    site.CSRF_TRUSTED_ORIGINS = ["https://app.example.net"]
    site.PARLEY = {"ALLOWED_ORIGINS": ["https://*.widgets.example", "http://localhost:3000"]}
    for origin in (
        b"https://app.example.net",
        b"https://a.widgets.example",
        b"https://b.a.widgets.example",
        b"http://localhost:3000",
    ):
        assert admitted(websocket_scope(origin)), origin
    for origin in (
        b"http://app.example.net",  # the scheme is part of the origin
        b"https://app.example.net:444",
        b"http://a.widgets.example",
        b"https://widgets.example.evil",
        b"http://localhost:3001",
        b"null",
    ):
        assert not admitted(websocket_scope(origin)), origin


def test_origin_check_hands_over_the_applications_own_coroutine(site):
    """No coroutine of the check's own stays alive while the socket is open: the server
    awaits the application's coroutine directly."""
    result = OriginCheck(app)(websocket_scope(b"http://chat.example.com"), None, None)
    assert inspect.iscoroutine(result) and result.cr_code is app.__code__
    result.close()


def test_origin_check_only_takes_websockets():
    with pytest.raises(ValueError):
        OriginCheck(app)({"type": "http", "headers": []}, None, None)


def test_room_consumer_application_returns_the_consumers_coroutine():
    consumer_app = websocket_urlpatterns[0].callback
    result = consumer_app({"type": "websocket"}, None, None)
    assert inspect.iscoroutine(result)
    assert result.cr_code.co_qualname == "RoomConsumer.__call__"
    result.close()


class SetsUser:
    """A host project's own socket authentication (a token, say) setting scope["user"]."""

    def __init__(self, inner, user):
        self.inner, self.user = inner, user

    async def __call__(self, scope, receive, send):
        return await self.inner({**scope, "user": self.user}, receive, send)


@pytest.mark.django_db(transaction=True)
async def test_the_user_of_an_outer_auth_middleware_is_admitted(alice, bob, private_room):
    """A project that authenticates sockets its own way keeps doing so: an authenticated
    ``scope["user"]`` is used (with its membership checked), without any session cookie."""
    stack = websocket_application(URLRouter(websocket_urlpatterns))
    owner = await RoomClient.connect(SetsUser(stack, alice), private_room)
    hello = await owner.expect("hello")
    assert hello["user"]["name"] == "alice"
    await owner.disconnect()
    stranger = await RoomClient.connect(SetsUser(stack, bob), private_room)
    assert (await stranger.expect("error"))["code"] == "forbidden"
    assert await stranger.closed() == 4403


@pytest.mark.django_db(transaction=True)
async def test_a_host_mounting_the_routes_under_a_prefix_gets_pages_that_find_them(
    settings, alice, private_room
):
    """The socket's address is reversed under SOCKET_PREFIX, for the room page (which the
    browser client follows) and for every other client Parley builds one for."""
    settings.PARLEY = {"SOCKET_PREFIX": "/chat/"}
    stack = URLRouter([path("chat/", URLRouter(websocket_urlpatterns))])
    expected = f"/chat/ws/rooms/{private_room.public_id}/"
    assert socket_path(private_room.public_id) == expected

    def room_page() -> str:
        browser = Client()
        browser.force_login(alice)
        return browser.get(f"/rooms/{private_room.public_id}/").content.decode()

    assert f'data-socket-path="{expected}"' in await sync_to_async(room_page)()

    client = await RoomClient.connect(stack, private_room, alice)
    assert (await client.expect("hello"))["room"]["id"] == private_room.public_id
    await client.disconnect()
