"""The WebSocket stack Parley asks host projects to use (parley.routing)."""

from __future__ import annotations

import inspect
from urllib.parse import urlparse

import pytest
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator

from parley.routing import OriginCheck, websocket_application, websocket_urlpatterns
from parley.testing import RoomClient

ALLOWED = ["http://127.0.0.1", "http://.example.com"]


async def app(scope, receive, send):
    pass


def websocket_scope(*origins: bytes) -> dict:
    return {"type": "websocket", "headers": [(b"origin", origin) for origin in origins]}


@pytest.mark.parametrize(
    "origins",
    [
        (b"http://127.0.0.1",),
        (b"http://chat.example.com",),
        (b"http://evil.example",),
        (b"null",),
        (),
        (b"http://evil.example", b"http://127.0.0.1"),  # the last header counts
        (b"http://127.0.0.1", b"http://evil.example"),
    ],
)
def test_origin_check_decides_as_channels_validator_does(origins):
    """The same allowed/refused decision as Channels' ``OriginValidator`` (whose
    ``valid_origin`` it uses), the last Origin header counting as there."""
    result = OriginCheck(app, ALLOWED)(websocket_scope(*origins), None, None)
    allowed = result.cr_code is app.__code__
    result.close()
    parsed = urlparse(origins[-1].decode("latin1")) if origins else None
    assert allowed == OriginValidator(app, ALLOWED).valid_origin(parsed)
    assert allowed == (origins[-1:] in ((b"http://127.0.0.1",), (b"http://chat.example.com",)))


def test_origin_check_hands_over_the_applications_own_coroutine():
    """No coroutine of the check's own stays alive while the socket is open: the server
    awaits the application's coroutine directly."""
    result = OriginCheck(app, ALLOWED)(websocket_scope(b"http://127.0.0.1"), None, None)
    assert inspect.iscoroutine(result) and result.cr_code is app.__code__
    result.close()


def test_an_origin_that_is_no_url_is_refused_not_an_error():
    """``urlparse`` raises on ``http://[::1``; Channels' validator lets that escape (the
    handshake fails with a server error), the check refuses it."""
    result = OriginCheck(app, ALLOWED)(websocket_scope(b"http://[::1"), None, None)
    assert result.cr_code is not app.__code__  # the denier's
    result.close()


def test_origin_check_only_takes_websockets():
    with pytest.raises(ValueError):
        OriginCheck(app, ALLOWED)({"type": "http", "headers": []}, None, None)


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
