from __future__ import annotations

import importlib
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, reason: str) -> None:
    """Skip on a laptop without the service; fail in CI, where every service must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def port_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    require(port_open(url, 6379), f"Redis is not reachable at {url}")
    return url


@pytest.fixture
def redis_env(redis_url: str) -> dict[str, str]:
    """Environment for servers sharing a Redis channel layer under a prefix of their own
    (pub/sub ignores database numbers, so the prefix is what keeps tests apart)."""
    return {"REDIS_URL": redis_url, "PARLEY_LAYER_PREFIX": f"parley-test-{uuid.uuid4().hex[:10]}"}


@pytest.fixture
def make_user(django_user_model):
    def make(username: str, password: str = "secret-pass-123"):
        return django_user_model.objects.create_user(username=username, password=password)

    return make


# What the example project sets for its login throttling (django-axes), its pages and its
# middleware: the tests that are about the example project test these, not tests/settings.py.
EXAMPLE_LOGIN_SETTINGS = (
    "AUTHENTICATION_BACKENDS",
    "MIDDLEWARE",
    "TEMPLATES",
    "AXES_FAILURE_LIMIT",
    "AXES_COOLOFF_TIME",
    "AXES_LOCKOUT_PARAMETERS",
    "AXES_RESET_ON_SUCCESS",
    "AXES_LOCKOUT_TEMPLATE",
)


@pytest.fixture
def example_login_settings(settings, monkeypatch):
    """The example project's own login settings (``example.settings``), for this test."""
    # Loaded as `make run` loads it; a key of the test run's, so that it writes no key file.
    monkeypatch.setenv("DEBUG", "true")
    monkeypatch.setenv("SECRET_KEY", settings.SECRET_KEY)
    example = importlib.import_module("example.settings")
    for name in EXAMPLE_LOGIN_SETTINGS:
        setattr(settings, name, getattr(example, name))
    return settings


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def shared_room(alice, bob):
    from parley.rooms import services

    room = services.room_create(owner=alice, title="Team", kind="shared")
    services.room_member_add(room=room, user=bob, by=alice)
    return room


@pytest.fixture
def private_room(alice):
    from parley.rooms import services

    return services.room_create(owner=alice, title="Notes", kind="private")


@pytest.fixture
def servers(transactional_db):
    """Start uvicorn subprocesses on the test database; all are stopped after the test."""
    from tests.servers import Server

    started: list[Server] = []

    def start(env: dict[str, str] | None = None, name: str = "server", args: tuple = ()) -> Server:
        server = Server(env=env, name=name, args=args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def fake_openai():
    """A real HTTP server on loopback speaking the OpenAI chat-completions wire format."""
    from tests.openai_server import serve

    yield from serve()


@pytest.fixture(scope="session", autouse=True)
def _end_stray_connections(django_db_setup, django_db_blocker):
    """Async tests leave connections open in asgiref's worker thread; PostgreSQL will not drop
    the test database while they live, so end them before it tries."""
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def redis_server():
    """A redis-server of the test's own, to stop and restart (see tests.servers.RedisServer)."""
    import shutil

    from tests.servers import RedisServer

    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server is not installed: fault tests start their own")
    server = RedisServer(binary).start()
    yield server
    server.stop()


# A real browser: Debian's chromium driven by Playwright ------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(
        sync_playwright is not None, "Playwright for Python is missing (pip install playwright)"
    )
    require(
        os.access(CHROMIUM, os.X_OK),
        f"{CHROMIUM} is missing: `make browser` installs Debian's chromium",
    )
    # Playwright's sync API keeps an asyncio loop marked as running in this thread, which
    # trips Django's SynchronousOnlyOperation guard for the (synchronous) test's ORM calls
    # and database fixtures. Nothing here is async: lift the guard while the browser lives.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Tab:
    """A page plus what it reported: dialogs (none may open) and console errors."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        from tests.servers import OUTPUT

        OUTPUT.mkdir(exist_ok=True)
        self.page.screenshot(path=str(OUTPUT / f"browser-{name}.png"))


@pytest.fixture
def new_tab(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def make() -> Tab:
        context = browser.new_context(viewport={"width": 1200, "height": 800})
        context.set_default_timeout(15_000)
        contexts.append(context)
        tab = Tab(context.new_page())

        def on_dialog(dialog: Any) -> None:
            tab.dialogs.append(dialog.message)
            dialog.dismiss()

        tab.page.on("dialog", on_dialog)
        tab.page.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))
        tab.page.on(
            "console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None
        )
        return tab

    yield make
    for context in contexts:
        context.close()


# Sockets through the example project's real stack, answered by the scripted backend -------


def scripted(**options):
    return {
        "BACKENDS": {
            "default": {"BACKEND": "parley.backends.scripted.ScriptedBackend", "OPTIONS": options}
        },
        "STREAM_FLUSH_INTERVAL": 0.01,
        "STREAM_PERSIST_INTERVAL": 0.05,
    }


@pytest.fixture
def backend(settings):
    """Configure the scripted backend: ``backend(reply=..., delay=...)``."""

    def configure(**options):
        settings.PARLEY = scripted(**options)

    configure(reply="Echo: {question}")
    return configure


@pytest.fixture
async def connect():
    clients: list[Any] = []

    async def open_(room, user, **kwargs):
        from example.asgi import application
        from parley.testing import RoomClient

        client = await RoomClient.connect(application, room, user, **kwargs)
        clients.append(client)
        return client

    yield open_
    for client in clients:
        await client.disconnect()


@pytest.fixture
async def asker(connect, private_room, alice):
    """Alice's socket in her private room, its hello received; every answer of the test
    ended after it."""
    from parley import answers

    client = await connect(private_room, alice)
    await client.expect("hello")
    yield client
    await answers.answers_shutdown()
