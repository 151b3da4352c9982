"""The chat page in a real browser (Debian's chromium driven by Playwright) against a real
uvicorn server: login, streaming, stop, escaping, history after reload, reconnecting."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    # The servers keep Django's guard against ORM calls from async code (see `browser`).
    return {"PARLEY_TEST_BACKEND": json.dumps(backend), "DJANGO_ALLOW_ASYNC_UNSAFE": ""}


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


def text_of(locator: Any) -> str:
    """The element's exact text (innerText would reflow white space)."""
    return locator.evaluate("element => element.textContent")


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
    first = text_of(body)
    time.sleep(1.0)
    second = text_of(body)
    assert len(second) > len(first), f"the answer did not grow: {first!r} then {second!r}"
    assert second.startswith(first)
    expect(answer.locator(".badge")).to_have_text("Writing…")
    # While streaming the Markdown is plain text; nothing is parsed as HTML yet.
    assert answer.locator("strong").count() == 0
    tab.shot("streaming")

    # A second page joining mid-answer gets the stored text plus a snapshot, then live deltas.
    late = page.context.new_page()
    late.goto(page.url)
    expect(late.locator("#connection-state")).to_have_attribute("data-state", "connected")
    late_body = late.locator(".msg-assistant .msg-body")
    expect(late_body).to_contain_text("Here is")
    joined = text_of(late_body)
    time.sleep(0.5)
    assert len(text_of(late_body)) > len(joined), "the late page does not follow the stream"

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
    # Every text either page showed while streaming was a prefix of the final answer: no
    # delta was lost, doubled or misplaced.
    for seen in (first, second, joined):
        assert stored.text.startswith(seen)
    expect(late.locator(".msg-assistant")).to_have_attribute("data-status", "cancelled")
    assert late.locator(".msg-assistant .msg-body").inner_html() == body.inner_html()
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

    # Shift+Enter starts a new line; Enter sends.
    ask.uncheck()
    box = page.locator("#composer-text")
    box.press_sequentially("line one")
    box.press("Shift+Enter")
    box.press_sequentially("<b>line two</b>")
    expect(page.locator(".msg-user")).to_have_count(2)
    box.press("Enter")
    expect(page.locator(".msg-user")).to_have_count(3)
    assert text_of(page.locator(".msg-user .msg-body").last) == "line one\n<b>line two</b>"
    expect(box).to_have_value("")

    for who in (tab, watcher):
        expect(who.page.locator(".msg-user")).to_have_count(3)
        assert who.page.locator("#messages img, #messages b, #messages script").count() == 0
        assert who.dialogs == []
        assert who.errors == []
    texts = [text_of(body).rstrip("\n") for body in page.locator("#messages .msg-body").all()]
    assert texts == [
        XSS,
        f"Echo this: {XSS}",
        f"You said: Echo this: {XSS}",
        "line one\n<b>line two</b>",
    ]


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

    # Over the limit from hello (MAX_MESSAGE_CHARS, 8000): counted, and not sent.
    box = page.locator("#composer-text")
    box.fill("x" * 8001)
    expect(page.locator("#composer-count")).to_have_text("8001 / 8000")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    box.press("Enter")
    expect(page.locator("#notice")).to_contain_text("the limit is 8000")
    assert page.locator("#messages > li").count() == 4

    page.reload()
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#messages > li")).to_have_count(4)
    assert page.locator("#messages .msg-body").all_inner_texts() == before
    expect(page.locator(".msg-assistant .msg-body strong").first).to_have_text("first question")
    seqs = page.locator("#messages > li").evaluate_all("els => els.map(e => e.dataset.seq)")
    assert seqs == ["1", "2", "3", "4"]
    tab.shot("reloaded")
    assert tab.errors == []


def retry_now(page: Any) -> None:
    """Press "Retry now" rather than wait out the backoff, unless the page is already
    connecting on its own."""
    from playwright.sync_api import Error

    button = page.locator("#retry-now")
    try:
        if button.is_visible():
            button.click(timeout=2_000)
    except Error:
        pass  # it started connecting meanwhile


@contextmanager
def restarted(server: Server, env: dict[str, str]) -> Iterator[Server]:
    """A new server on the stopped ``server``'s port: the page reconnects to the address
    it knows. Stopped on leaving the block."""
    again = Server(env=env, name=f"{server.name}-again")
    again.port = server.port
    again.log_path = OUTPUT / f"{again.name}-{again.port}.log"
    again.start()
    try:
        yield again
    finally:
        again.stop()


def test_reconnect_resumes_interrupted_answer_and_sends_queued_message(
    servers, alice, private_room, new_tab
):
    from playwright.sync_api import expect

    server = servers(env=backend_env(SLOW), name="browser-restart")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    send(tab, "before the restart")
    answer = page.locator(".msg-assistant").first
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(answer.locator(".msg-body")).to_contain_text("Here is")

    server.stop()  # the server interrupts its answer as it goes down
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "reconnecting")
    expect(state).to_contain_text("Reconnecting in")
    send(tab, "typed while offline")
    pending = page.locator(".msg-pending")
    expect(pending).to_have_count(1)
    expect(pending.locator(".badge")).to_have_text("Waiting for connection…")
    tab.shot("reconnecting")

    with restarted(server, backend_env(SLOW)):
        retry_now(page)
        expect(state).to_have_attribute("data-state", "connected", timeout=30_000)
        # The answer's end, missed while disconnected, comes back with the history.
        expect(answer).to_have_attribute("data-status", "interrupted")
        expect(answer.locator(".badge")).to_have_text("Interrupted")
        expect(answer.locator(".msg-error")).to_have_text(
            "The server restarted during this answer."
        )
        # The message typed offline was sent once, and the assistant answers it.
        expect(pending).to_have_count(0)
        expect(page.locator(".msg-user .msg-body")).to_have_text(
            ["before the restart", "typed while offline"]
        )
        second = page.locator(".msg-assistant").nth(1)
        expect(second).to_have_attribute("data-status", "streaming")
        tab.shot("reconnected")
        page.get_by_role("button", name="Stop").click()
        expect(second).to_have_attribute("data-status", "cancelled")
    assert Message.objects.filter(room=private_room, text="typed while offline").count() == 1
    seqs = page.locator("#messages > li").evaluate_all("els => els.map(e => e.dataset.seq)")
    assert seqs == ["1", "2", "3", "4"]
    # Only the failed connection attempts while the server was down may be logged.
    assert all("ERR_CONNECTION_REFUSED" in error for error in tab.errors), tab.errors


def test_no_retrying_once_logged_out(servers, alice, private_room, new_tab):
    from playwright.sync_api import expect

    server = servers(env=backend_env(FAST), name="browser-logout")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    # Log out in another tab of the same browser: the session is gone.
    other = page.context.new_page()
    other.goto(f"{server.http_url}/")
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url("**/login/")
    server.stop()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "reconnecting")
    with restarted(server, backend_env(FAST)):
        retry_now(page)
        # The server refuses the socket with 4401; the page stops trying and says why.
        expect(state).to_have_attribute("data-state", "offline", timeout=30_000)
        expect(state).to_contain_text("session has ended")
        expect(page.get_by_role("button", name="Retry now")).to_be_hidden()
        tab.shot("logged-out")


def test_failed_answer_shows_its_error(servers, alice, private_room, new_tab):
    from playwright.sync_api import expect

    failing = {
        "BACKEND": "parley.backends.scripted.ScriptedBackend",
        "OPTIONS": {"reply": "A partial answer", "fail_after": 2, "error": "Upstream exploded."},
    }
    server = servers(env=backend_env(failing), name="browser-fail")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    send(tab, "Will this work?")
    answer = page.locator(".msg-assistant")
    expect(answer).to_have_attribute("data-status", "failed")
    expect(answer.locator(".badge")).to_have_text("Failed")
    expect(answer.locator(".msg-error")).to_have_text("Upstream exploded.")
    expect(answer.locator(".msg-body")).to_have_text("A partial")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    tab.shot("failed")
    assert tab.errors == []


def test_the_offline_assistant_answers_from_the_docs_with_a_source_link(
    servers, alice, private_room, new_tab, settings
):
    """The demo's promise: ask about Parley, get the answer streamed from its documentation,
    with a link to the section it comes from."""
    from io import StringIO

    from django.core.management import call_command
    from playwright.sync_api import expect

    from tests.servers import ROOT

    folders = [str(ROOT / "docs"), str(ROOT / "README.md")]
    settings.PARLEY = {**settings.PARLEY, "KNOWLEDGE": {"FOLDERS": folders}}
    call_command("parley_index", "--no-progress", stdout=StringIO())
    offline = {"BACKEND": "parley.backends.offline.OfflineBackend", "OPTIONS": {"delay": 0.03}}
    server = servers(env=backend_env(offline), name="browser-knowledge")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)

    send(tab, "How do I connect Ollama?")
    answer = page.locator(".msg-assistant")
    expect(answer).to_have_attribute("data-status", "streaming")
    body = answer.locator(".msg-body")
    expect(body).to_contain_text("Ollama")
    streamed = text_of(body)
    tab.shot("knowledge-streaming")
    expect(answer).to_have_attribute("data-status", "complete")
    assert len(text_of(body)) > len(streamed), "the answer arrived whole, not streamed"
    expect(body.locator("pre code")).to_contain_text("OPENAI_BASE_URL=http://127.0.0.1:11434/v1")
    link = body.get_by_role("link", name="Questions and answers › How do I connect Ollama?")
    expect(link).to_have_attribute("href", "/knowledge/docs/faq.md#how-do-i-connect-ollama")
    tab.shot("knowledge-answer")

    # The source link opens the document at that section, under the strict CSP.
    with page.context.expect_page() as opened:
        link.click()
    source = opened.value
    source.wait_for_load_state()
    assert source.url == f"{server.http_url}/knowledge/docs/faq.md#how-do-i-connect-ollama"
    expect(source.locator("h2#how-do-i-connect-ollama")).to_have_text("How do I connect Ollama?")
    expect(source.locator("article.document")).to_contain_text("ollama pull llama3.2")
    source.screenshot(path=str(OUTPUT / "browser-knowledge-source.png"))
    assert tab.errors == []
