"""The chat page in a real browser (Debian's chromium driven by Playwright) against a real
uvicorn server: login, streaming, stop, escaping, history after reload, reconnecting."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from parley.models import Message
from tests.conftest import require
from tests.servers import OUTPUT, Server

pytestmark = [pytest.mark.browser, pytest.mark.server]

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
PASSWORD = "secret-pass-123"  # tests/conftest.py make_user

# About 12 pieces a repeat at 50 ms each: this answer streams for ~18 s unless stopped.
SLOW = {
    "BACKEND": "parley.backends.scripted.ScriptedBackend",
    "OPTIONS": {
        "reply": "Here is **bold** advice about {question}\n\n- one\n- two\n\n",
        "delay": 0.05,
        "repeat": 30,
    },
}
FAST = {
    "BACKEND": "parley.backends.scripted.ScriptedBackend",
    "OPTIONS": {"reply": "You said: **{question}**", "delay": 0.01},
}
XSS = "<img src=x onerror=alert(1)>"


def backend_env(backend: dict[str, Any]) -> dict[str, str]:
    return {"PARLEY_TEST_BACKEND": json.dumps(backend)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None, "Playwright for Python is not installed (pip install playwright)")
    require(
        os.access(CHROMIUM, os.X_OK),
        f"{CHROMIUM} is missing: `make browser` installs Debian's chromium",
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@dataclass
class Tab:
    """A page plus what it reported: dialogs (none may open) and console errors."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
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


def log_in(tab: Tab, server: Server, username: str) -> None:
    """Through the real login form, as a person would."""
    page = tab.page
    page.goto(f"{server.http_url}/")
    assert "/login/" in page.url  # the room list needs a login
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.http_url}/")


def open_room(tab: Tab, room: Any) -> None:
    from playwright.sync_api import expect

    tab.page.get_by_role("link", name=room.title).click()
    expect(tab.page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(tab.page.locator("#connection-state")).to_contain_text("Connected")


def send(tab: Tab, text: str) -> None:
    box = tab.page.locator("#composer-text")
    box.fill(text)
    box.press("Enter")


def test_answer_streams_stops_and_renders_markdown(servers, alice, private_room, new_tab):
    from playwright.sync_api import expect

    server = servers(env=backend_env(SLOW), name="browser-stream")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    expect(page.locator(".account-name")).to_contain_text("alice")
    open_room(tab, private_room)
    tab.shot("empty-room")

    send(tab, "How do I plan a trip?")
    expect(page.locator(".msg-user .msg-body")).to_have_text("How do I plan a trip?")
    answer = page.locator(".msg-assistant")
    expect(answer).to_have_attribute("data-status", "streaming")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    body = answer.locator(".msg-body")
    expect(body).to_contain_text("Here is")
    first = len(body.inner_text())
    time.sleep(1.0)
    second = len(body.inner_text())
    assert second > first, f"the answer did not grow: {first} then {second} characters"
    expect(answer.locator(".badge")).to_have_text("Writing…")
    # While streaming the Markdown is plain text; nothing is parsed as HTML yet.
    assert answer.locator("strong").count() == 0
    tab.shot("streaming")

    stop.click()
    expect(answer).to_have_attribute("data-status", "cancelled")
    expect(answer.locator(".badge")).to_have_text("Stopped")
    expect(stop).to_be_hidden()
    # On done the server's sanitised HTML replaces the text: the Markdown is rendered.
    expect(answer.locator(".msg-body strong").first).to_have_text("bold")
    expect(answer.locator(".msg-body li").first).to_have_text("one")
    tab.shot("stopped")

    stored = Message.objects.get(room=private_room, role="assistant")
    assert stored.status == Message.Status.CANCELLED
    assert stored.text.startswith("Here is **bold**")
    assert tab.dialogs == []
    assert tab.errors == []


def test_user_text_is_shown_as_text_never_as_html(servers, alice, bob, shared_room, new_tab):
    from playwright.sync_api import expect

    server = servers(env=backend_env(FAST), name="browser-xss")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, shared_room)
    watcher = new_tab()
    log_in(watcher, server, "bob")
    open_room(watcher, shared_room)

    ask = page.get_by_label("Ask the assistant")
    expect(ask).to_be_checked()  # shared rooms ask the assistant by default
    ask.uncheck()
    send(tab, XSS)
    mine = page.locator(".msg-user .msg-body")
    expect(mine).to_have_text(XSS)
    # Bob sees Alice's message live, as text too; nobody asked the assistant.
    expect(watcher.page.locator(".msg-user .msg-body")).to_have_text(XSS)
    expect(watcher.page.locator(".msg-user .msg-author")).to_have_text("alice")

    ask.check()
    send(tab, f"Echo this: {XSS}")
    answer = page.locator(".msg-assistant")
    expect(answer).to_have_count(1)
    expect(answer).to_have_attribute("data-status", "complete")
    # The scripted answer echoes the question in bold: rendered Markdown, escaped HTML.
    expect(answer.locator(".msg-body strong")).to_have_text(f"Echo this: {XSS}")
    expect(watcher.page.locator(".msg-assistant .msg-body strong")).to_have_text(
        f"Echo this: {XSS}"
    )
    tab.shot("escaping")

    for who in (tab, watcher):
        assert who.page.locator("#messages img").count() == 0
        assert who.dialogs == []
        assert who.errors == []
    texts = page.locator("#messages .msg-body").all_inner_texts()
    assert texts == [XSS, f"Echo this: {XSS}", f"You said: Echo this: {XSS}"]


def test_history_is_restored_after_reload(servers, alice, private_room, new_tab):
    from playwright.sync_api import expect

    server = servers(env=backend_env(FAST), name="browser-reload")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    for question in ("first question", "second question"):
        send(tab, question)
        expect(page.locator(".msg-assistant[data-status=complete]")).to_have_count(
            1 if question.startswith("first") else 2
        )
    before = page.locator("#messages .msg-body").all_inner_texts()
    assert len(before) == 4

    page.reload()
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#messages > li")).to_have_count(4)
    assert page.locator("#messages .msg-body").all_inner_texts() == before
    expect(page.locator(".msg-assistant .msg-body strong").first).to_have_text("first question")
    seqs = page.locator("#messages > li").evaluate_all("els => els.map(e => e.dataset.seq)")
    assert seqs == ["1", "2", "3", "4"]
    tab.shot("reloaded")
    assert tab.errors == []


def test_reconnects_and_delivers_what_was_typed_offline(servers, alice, private_room, new_tab):
    from playwright.sync_api import expect

    server = servers(env=backend_env(FAST), name="browser-restart")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    send(tab, "before the restart")
    expect(page.locator(".msg-assistant[data-status=complete]")).to_have_count(1)

    server.stop()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "reconnecting")
    expect(state).to_contain_text("Reconnecting in")
    send(tab, "typed while offline")
    pending = page.locator(".msg-pending")
    expect(pending).to_have_count(1)
    expect(pending.locator(".badge")).to_have_text("Waiting for connection…")
    tab.shot("reconnecting")

    again = Server(env=backend_env(FAST), name="browser-restarted")
    again.port = server.port  # the page reconnects to the address it knows
    again.start()
    try:
        page.get_by_role("button", name="Retry now").click(timeout=2_000)
    except Exception:
        pass  # it may have reconnected by itself already
    try:
        expect(state).to_have_attribute("data-state", "connected", timeout=30_000)
        expect(pending).to_have_count(0)
        expect(page.locator(".msg-assistant[data-status=complete]")).to_have_count(2)
        texts = page.locator("#messages .msg-body").all_inner_texts()
        assert texts == [
            "before the restart",
            "You said: before the restart",
            "typed while offline",
            "You said: typed while offline",
        ]
        tab.shot("reconnected")
    finally:
        again.stop()
    assert Message.objects.filter(room=private_room, text="typed while offline").count() == 1
    # Only the failed connection attempts while the server was down may be logged.
    assert all("WebSocket" in error or "ERR_CONNECTION" in error for error in tab.errors), tab.errors
