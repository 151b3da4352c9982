"""The chat page in a real browser (Debian's chromium driven by Playwright) against a real
uvicorn server: login, streaming, stop, escaping, history after reload, reconnecting."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from parley.models import Message
from tests.conftest import Tab
from tests.payloads import Payload, hostile_payloads
from tests.servers import OUTPUT, Server

pytestmark = [pytest.mark.browser, pytest.mark.server]

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


def words(text: str) -> list[str]:
    """The words of a text, without Markdown's marks."""
    return re.sub(r"[*#`>-]", " ", text).split()


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
    expect(answer.locator(".badge")).to_have_text("Writing…")
    # The Markdown is formatted while it streams, block by block.
    expect(body.locator("strong").first).to_have_text("bold")
    expect(body.locator("li").first).to_have_text("one")
    assert "**" not in text_of(body.locator("p").first)
    # Blocks already written are never drawn again: the same elements stay, to the end.
    written = body.evaluate_handle("body => [...body.children].slice(0, -1)")
    assert body.evaluate("(body, kept) => kept.length", written) >= 2
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
    expect(answer.locator(".msg-body strong").first).to_have_text("bold")
    expect(answer.locator(".msg-body li").first).to_have_text("one")
    # The finished answer's HTML kept every block the stream had written.
    still = "(body, kept) => kept.filter(el => el.parentNode === body).length === kept.length"
    assert body.evaluate(still, written)
    tab.shot("stopped")

    stored = Message.objects.get(room=private_room, role="assistant")
    assert stored.status == Message.Status.CANCELLED
    assert stored.text.startswith("Here is **bold**")
    # Every text either page showed while streaming was the start of the final answer (its
    # last word maybe cut, and with Markdown's marks maybe not yet formatted): no delta was
    # lost, doubled or misplaced.
    final = words(text_of(body))
    for seen in map(words, (first, second, joined)):
        assert final[: len(seen) - 1] == seen[:-1]
    expect(late.locator(".msg-assistant")).to_have_attribute("data-status", "cancelled")
    assert late.locator(".msg-assistant .msg-body").inner_html() == body.inner_html()
    assert tab.dialogs == []
    assert tab.errors == []


CODE = 'def greet(name):\n    return f"Hello, {name}"  # a comment\n'
WIDE = (
    "| setting | default | environment variable | what it does |\n|---|---|---|---|\n"
    "| parley.E001 | none | PARLEY_BACKEND | names the assistant backend by dotted path |\n"
)
CODE_AND_TABLE = {
    "BACKEND": "parley.backends.scripted.ScriptedBackend",
    # (The reply is a str.format template: the code's braces are doubled.)
    "OPTIONS": {
        "reply": "Run this:\n\n```python\n"
        + CODE.replace("{", "{{").replace("}", "}}")
        + f"```\n\n{WIDE}\nDone.",
        "delay": 0.01,
    },
}


def test_code_is_highlighted_and_copied_and_wide_tables_scroll(
    servers, alice, private_room, new_tab
):
    """On a phone-sized page: the answer names its model; the code block is coloured by
    its language, has a bar with
    the language and a copy button that copies the code exactly; the answer copies as its
    Markdown; a table wider than the page scrolls inside the answer, and no word in it is
    broken in the middle."""
    from playwright.sync_api import expect

    server = servers(env=backend_env(CODE_AND_TABLE), name="browser-code")
    tab = new_tab()
    page = tab.page
    page.set_viewport_size({"width": 420, "height": 800})
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.http_url)
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    send(tab, "How do I greet?")
    answer = page.locator(".msg-assistant[data-status=complete]")
    expect(answer).to_have_count(1)
    expect(answer.locator(".msg-meta .msg-model")).to_have_text("scripted")  # who wrote it

    block = answer.locator(".code-block")
    expect(block.locator(".code-language")).to_have_text("python")
    keyword = block.locator("pre span.k").first
    expect(keyword).to_have_text("def")
    colour = "el => getComputedStyle(el).color"
    assert keyword.evaluate(colour) != block.locator("pre").evaluate(colour)
    assert block.locator("pre .c1").evaluate("el => getComputedStyle(el).fontStyle") == "italic"
    clipboard = "() => navigator.clipboard.readText()"
    copy = block.get_by_role("button", name="Copy code")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate(clipboard) == CODE
    answer.get_by_role("button", name="Copy answer").click()
    stored = Message.objects.get(room=private_room, role="assistant")
    assert page.evaluate(clipboard) == stored.text

    scroller = answer.locator(".table-scroll")
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth"), "the table does not scroll"
    assert page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    lines = """cell => { const range = document.createRange(); range.selectNodeContents(cell);
        return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; }"""
    assert answer.locator("td", has_text="parley.E001").evaluate(lines) == 1
    tab.shot("code-and-table")
    scroller.evaluate("el => el.scrollBy(400, 0)")
    tab.shot("code-and-table-scrolled")
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
    from django.contrib.sessions.models import Session
    from playwright.sync_api import expect

    server = servers(env=backend_env(FAST), name="browser-logout")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    state = page.locator("#connection-state")
    # Log out in another tab of the same browser: the open socket is closed at once (4401)
    # and the page says why instead of retrying.
    other = page.context.new_page()
    other.goto(f"{server.http_url}/")
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url("**/login/")
    expect(state).to_have_attribute("data-state", "offline")
    expect(state).to_contain_text("session has ended")
    expect(page.get_by_role("button", name="Retry now")).to_be_hidden()
    other.close()

    # A session that ends while the server is down: the reconnecting page is refused with
    # 4401 when the server is back, and stops trying.
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    server.stop()
    expect(state).to_have_attribute("data-state", "reconnecting")
    Session.objects.all().delete()
    with restarted(server, backend_env(FAST)):
        retry_now(page)
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
    settings.PARLEY = {
        **settings.PARLEY,
        "KNOWLEDGE": {**settings.PARLEY["KNOWLEDGE"], "FOLDERS": folders},
    }
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


# Hostile payloads ------------------------------------------------------------------------


class EvilServer:
    """An HTTP server on another loopback port, standing for a foreign host: it notes every
    request that reaches it (none may), and answers each with ``page``."""

    def __init__(self) -> None:
        hits = self.hits = []
        # A page with an icon of its own: for the probe page, chromium would otherwise fetch
        # /favicon.ico by itself, at a moment of its choosing.
        self.page = '<!doctype html><link rel="icon" href="data:,">ok'
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                body = site.page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def evil_server() -> Iterator[EvilServer]:
    server = EvilServer()
    yield server
    server.stop()


def record_foreign_requests(tab: Tab, server: Server, evil: EvilServer) -> list[str]:
    """Every request of ``tab``'s browser context for anything but ``server``: requests for
    the evil server are let through (so that it sees them too), others are aborted."""
    foreign: list[str] = []
    local = (f"{server.http_url}/", "data:", "blob:", "about:")

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(local):
            route.continue_()
            return
        foreign.append(f"route {url}")
        if url.startswith(evil.url):
            route.continue_()
        else:
            route.abort()

    context = tab.page.context
    context.route("**/*", guard)
    context.on(
        "request",
        lambda request: None if request.url.startswith(local) else foreign.append(request.url),
    )
    context.on("page", lambda page: foreign.append(f"new page {page.url}"))
    return foreign


UNSAFE_DOM = """list => {
    const found = [];
    const banned = "script,img,svg,iframe,frame,object,embed,meta,link,style,base,form,input,"
        + "button,video,audio,source,picture,math,details,body,noscript,image,textarea,select";
    // Parley's own controls (a code block's copy button, an answer's feedback): no answer
    // can make one, as no class but highlighting's survives the sanitiser. (Their textareas
    // get a style from Playwright itself: a screenshot hides the caret with one.)
    const own = (el) => el.closest(".code-bar, .msg-meta, .msg-feedback");
    for (const el of list.querySelectorAll(banned)) if (!own(el)) found.push(`<${el.localName}>`);
    for (const el of list.querySelectorAll("*")) {
        if (own(el)) continue;
        for (const attr of el.attributes) {
            const unsafe = /^on|^(src|srcset|srcdoc|style|action|formaction|poster|background)$/i;
            if (unsafe.test(attr.name)) found.push(`<${el.localName} ${attr.name}>`);
        }
    }
    for (const a of list.querySelectorAll("a[href]")) {
        if (!/^(https?:|mailto:)/.test(a.href)) found.push(`<a href="${a.getAttribute("href")}">`);
        if (!/noopener/.test(a.rel)) found.push(`<a rel="${a.rel}">`);
    }
    return found;
}"""


def assert_payloads_harmless(tab: Tab, payloads: list[Payload], url: str) -> None:
    """Every payload is shown as text, in the user's message and in the assistant's echo; no
    markup it carried is in the page, nothing of it ran, and the page did not move."""
    from playwright.sync_api import expect

    page = tab.page
    expect(page.locator(".msg-assistant[data-status=complete]")).to_have_count(len(payloads))
    users = [text_of(body) for body in page.locator(".msg-user .msg-body").all()]
    assert users == [p.text for p in payloads]
    assistants = [text_of(body) for body in page.locator(".msg-assistant .msg-body").all()]
    lost = [p.name for p, shown in zip(payloads, assistants, strict=True) if p.shown not in shown]
    assert lost == [], f"the assistant's rendering lost these payloads' text: {lost}"
    assert page.locator("#messages").evaluate(UNSAFE_DOM) == []
    for body in page.locator("#messages .msg-body").all():
        body.hover()  # mouseover handlers, had any survived
    assert page.evaluate("() => typeof window.pwned") == "undefined"
    assert tab.dialogs == []
    assert tab.errors == []
    assert page.url == url


ECHO = {
    "BACKEND": "parley.backends.scripted.ScriptedBackend",
    "OPTIONS": {"reply": "{question}"},
}


# Every change to the message list is checked as it happens, not only the final page: a
# streaming answer's blocks replace each other many times before the answer ends.
WATCH_UNSAFE = f"""list => {{
    const check = {UNSAFE_DOM};
    window.parleyUnsafe = [];
    const watch = () => window.parleyUnsafe.push(...check(list));
    const changes = {{ subtree: true, childList: true, attributes: true }};
    new MutationObserver(watch).observe(list, changes);
}}"""

# The echo, one character per delta, each delta rendered: a payload is sent cut at every
# position (tests/test_rendering.py checks each cut's HTML without a browser).
ECHO_STREAMED = {
    **ECHO,
    "OPTIONS": {**ECHO["OPTIONS"], "pieces": "characters", "delay": 0.004},
}
STREAMED_OPTIONS = {"STREAM_FLUSH_INTERVAL": 0.002, "STREAM_RENDER_INTERVAL": 0}


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "a character per delta"])
def test_hostile_payloads_stay_text_run_nothing_and_reach_no_other_host(
    servers, alice, bob, shared_room, new_tab, evil_server, streamed
):
    """Alice sends each payload to the shared room and the assistant says it back (rendered
    as Markdown): on her page, on Bob's (live) and on hers reloaded (history), no script
    runs, no request leaves for another host, and the text is all still there; streamed,
    at no moment of the stream either."""
    from playwright.sync_api import expect

    env = backend_env(ECHO_STREAMED if streamed else ECHO)
    if streamed:
        env["PARLEY_TEST_OPTIONS"] = json.dumps(STREAMED_OPTIONS)
    server = servers(env=env, name="browser-payloads")
    payloads = hostile_payloads(evil_server.url)
    tab, watcher = new_tab(), new_tab()
    foreign = [record_foreign_requests(t, server, evil_server) for t in (tab, watcher)]

    # The detectors work: a page of the same context fetching from the evil server is seen
    # by the route, by the request log and by the evil server itself.
    probe = tab.page.context.new_page()
    probe.goto(f"{evil_server.url}/probe")
    seen = set(foreign[0])
    assert {f"route {evil_server.url}/probe", f"{evil_server.url}/probe"} <= seen
    assert any(entry.startswith("new page") for entry in seen)
    assert evil_server.hits == ["/probe"]
    probe.close()
    foreign[0].clear()
    evil_server.hits.clear()

    log_in(tab, server, "alice")
    open_room(tab, shared_room)
    log_in(watcher, server, "bob")
    open_room(watcher, shared_room)
    for page in (tab.page, watcher.page):
        page.locator("#messages").evaluate(WATCH_UNSAFE)
    expect(tab.page.get_by_label("Ask the assistant")).to_be_checked()
    done = tab.page.locator(".msg-assistant[data-status=complete]")
    for count, payload in enumerate(payloads, start=1):
        send(tab, payload.text)
        expect(done, f"the answer to {payload.name!r}").to_have_count(count)
    tab.shot("payloads-streamed" if streamed else "payloads")
    for page in (tab.page, watcher.page):
        assert page.evaluate("() => window.parleyUnsafe") == []

    room_url = tab.page.url
    assert_payloads_harmless(tab, payloads, room_url)
    assert_payloads_harmless(watcher, payloads, room_url)
    tab.page.reload()
    expect(tab.page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    assert_payloads_harmless(tab, payloads, room_url)
    assert foreign == [[], []]
    assert evil_server.hits == []


def test_bidi_overrides_in_names_and_titles_are_isolated(servers, alice, make_user, new_tab):
    """A right-to-left override in a username or a room title ("\u202enimda" shows as
    "admin") is rendered inside an isolating element wherever it appears (the room list,
    the room's title, its members, the author of a message drawn by the script), so it
    cannot reorder the text around it."""
    from playwright.sync_api import expect

    from parley.rooms import services

    spoof = make_user("\u202enimda")
    room = services.room_create(owner=alice, title="Team \u202egnp.exe", kind="shared")
    services.room_member_add(room=room, user=spoof, by=alice)
    services.message_post(room=room, author=spoof, text="hello from the admin")
    server = servers(env=backend_env(FAST), name="browser-bidi")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")

    def bidi(locator: Any) -> tuple[str, str]:
        return tuple(locator.evaluate("el => [el.tagName, getComputedStyle(el).unicodeBidi]"))

    card = page.locator(".room-card-title", has_text="gnp.exe")
    assert bidi(card) == ("BDI", "isolate")
    open_room(tab, room)
    assert bidi(page.locator("#room-title bdi")) == ("BDI", "isolate")
    member = page.locator(".members bdi", has_text="nimda")
    assert text_of(member) == "\u202enimda"
    assert bidi(member) == ("BDI", "isolate")
    author = page.locator(".msg-user .msg-author")
    expect(author).to_have_text("\u202enimda")
    assert bidi(author)[1] == "isolate"
    assert tab.errors == [] and tab.dialogs == []


# The embedded chat (<parley-chat>) ---------------------------------------------------------


def visitors_env(backend: dict[str, Any]) -> dict[str, str]:
    return {
        **backend_env(backend),
        "PARLEY_TEST_OPTIONS": json.dumps({"VISITORS": {"ENABLED": True}}),
    }


def test_a_visitor_chats_in_the_widget_and_keeps_the_conversation_on_logging_in(
    servers, alice, new_tab
):
    """The example site's page with <parley-chat> inline and as a launcher, under its strict
    CSP: a visitor who is not logged in asks, watches the stream, reloads mid-answer and
    sees it resume, stops it; logging in makes the conversation alice's."""
    from playwright.sync_api import expect

    from parley.models import Room, Visitor

    server = servers(env=visitors_env(SLOW), name="browser-widget")
    tab = new_tab()
    page = tab.page
    page.goto(f"{server.http_url}/site/")
    chat = page.locator(".home-chat parley-chat")
    expect(chat.locator(".conn")).to_have_attribute("data-state", "connected")
    launcher = page.locator("parley-chat[launcher]")
    expect(launcher.locator(".panel")).to_be_hidden()  # closed: no socket yet

    chat.get_by_role("textbox", name="Message").fill("How do I plan a trip?")
    chat.get_by_role("textbox", name="Message").press("Enter")
    expect(chat.locator(".msg-user .msg-body")).to_have_text("How do I plan a trip?")
    expect(chat.locator(".msg-user .msg-author")).to_have_text("You")
    answer = chat.locator(".msg-assistant")
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(answer.locator(".msg-body")).to_contain_text("Here is")
    tab.shot("widget-streaming")

    page.reload()  # mid-answer: the same conversation, the stream picked up where it is
    chat = page.locator(".home-chat parley-chat")
    answer = chat.locator(".msg-assistant")
    expect(answer).to_have_attribute("data-status", "streaming")
    first = text_of(answer.locator(".msg-body"))
    assert first.startswith("Here is")
    time.sleep(1.0)
    assert len(text_of(answer.locator(".msg-body"))) > len(first), "the stream did not resume"
    chat.get_by_role("button", name="Stop").click()
    expect(answer).to_have_attribute("data-status", "cancelled")
    expect(answer.locator(".msg-body strong").first).to_have_text("bold")

    visitor = Visitor.objects.get()
    room = Room.objects.get(visitor=visitor)
    assert room.owner is None and room.messages.count() == 2
    assert room.messages.get(role="user").author is None

    # The launcher: the same conversation, in its own shadow root.
    launcher.get_by_role("button", name="Assistant").click()
    expect(launcher.locator(".msg-user .msg-body")).to_have_text("How do I plan a trip?")

    page.goto(f"{server.http_url}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.http_url}/")
    page.goto(f"{server.http_url}/site/")
    chat = page.locator(".home-chat parley-chat")
    expect(chat.locator(".msg-user .msg-body")).to_have_text("How do I plan a trip?")
    expect(chat.locator(".msg-user .msg-author")).to_have_text("You")
    room.refresh_from_db()
    assert room.owner == alice and room.visitor is None
    assert room.messages.get(role="user").author == alice
    assert tab.dialogs == []
    assert tab.errors == []


# What a screen reader is told -------------------------------------------------------------


def ax_nodes(page: Any) -> dict[str, dict[str, Any]]:
    """Chromium's accessibility tree of the page (CDP), by node id."""
    session = page.context.new_cdp_session(page)
    try:
        return {n["nodeId"]: n for n in session.send("Accessibility.getFullAXTree")["nodes"]}
    finally:
        session.detach()


def ax_property(node: dict[str, Any], name: str) -> Any:
    for prop in node.get("properties", ()):
        if prop["name"] == name:
            return prop["value"].get("value")
    return None


def ax_find(nodes: dict[str, dict[str, Any]], role: str, **properties: Any) -> list[dict[str, Any]]:
    return [
        n for n in nodes.values()
        if not n.get("ignored") and n.get("role", {}).get("value") == role
        and all(ax_property(n, k) == v for k, v in properties.items())
    ]  # fmt: skip


def ax_text(nodes: dict[str, dict[str, Any]], node: dict[str, Any]) -> str:
    """The text a screen reader finds under ``node``: its static text, what aria-hidden
    hides left out (other ignored nodes, such as plain spans, still hold text)."""
    reasons = {reason["name"] for reason in node.get("ignoredReasons", ())}
    if reasons & {"ariaHiddenElement", "ariaHiddenSubtree"}:
        return ""
    if node.get("role", {}).get("value") == "StaticText":
        return str(node.get("name", {}).get("value", ""))
    return "".join(ax_text(nodes, nodes[c]) for c in node.get("childIds", ()) if c in nodes)


def test_a_screen_reader_hears_each_message_once_and_no_chatter(
    servers, alice, private_room, new_tab
):
    """The message list is no live region; the announcer (a live log) gets the question
    once and the answer once, finished, while the streaming answer is aria-busy; history
    is not announced again on reload; reconnecting does not re-announce every second."""
    from playwright.sync_api import expect

    server = servers(env=backend_env(SLOW), name="browser-a11y")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    nodes = ax_nodes(page)
    (messages,) = ax_find(nodes, "list")
    assert ax_property(messages, "live") is None  # its changes are not read out
    (announcer,) = ax_find(nodes, "log", live="polite")

    send(tab, "How do I plan a trip?")
    answer = page.locator(".msg-assistant")
    expect(answer.locator(".msg-body")).to_contain_text("Here is")
    time.sleep(1.0)  # some 20 deltas
    nodes = ax_nodes(page)
    (busy,) = ax_find(nodes, "listitem", busy=True)
    assert "Here is" in ax_text(nodes, busy)
    (announcer,) = ax_find(nodes, "log", live="polite")
    assert ax_text(nodes, announcer) == "You: How do I plan a trip?"

    page.get_by_role("button", name="Stop").click()
    expect(answer).to_have_attribute("data-status", "cancelled")
    nodes = ax_nodes(page)
    assert ax_find(nodes, "listitem", busy=True) == []
    said = page.locator("#announcer p").all_text_contents()
    assert len(said) == 2 and said[0] == "You: How do I plan a trip?"
    stored = Message.objects.get(room=private_room, role="assistant").text
    assert said[1] == f"Assistant (Stopped): {stored}"  # once, whole

    page.reload()
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#messages > li")).to_have_count(2)
    assert page.locator("#announcer p").count() == 0  # history is not news

    server.stop()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "reconnecting")
    heard, shown = set(), set()
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        nodes = ax_nodes(page)
        (status,) = ax_find(nodes, "status")
        heard.add(ax_text(nodes, status).strip())
        shown.add(state.inner_text())
        time.sleep(0.5)
    assert len(shown) > 2, shown  # the countdown runs on screen…
    assert heard <= {"Reconnecting", "Connecting…"}, heard  # …but is not read out


def test_the_script_embed_works_on_a_listed_origin_and_nowhere_else(servers, new_tab):
    """The documented <script type="module"> embed, on pages of two other sites: the one in
    EMBED_ORIGINS gets a visitor's chat (no cookie of Parley's site involved); the other
    gets no ticket and no socket."""
    from playwright.sync_api import expect

    from parley.models import Visitor

    listed, unlisted = EvilServer(), EvilServer()
    try:
        options = {"VISITORS": {"ENABLED": True}, "EMBED_ORIGINS": [listed.url]}
        server = servers(
            env={**backend_env(FAST), "PARLEY_TEST_OPTIONS": json.dumps(options)}, name="embed"
        )
        for site in (listed, unlisted):
            site.page = (
                '<!doctype html><link rel="icon" href="data:,"><h1>Another shop</h1>'
                f'<script type="module" src="{server.http_url}/static/parley/widget.js"></script>'
                f'<parley-chat endpoint="{server.http_url}/chat/session/"></parley-chat>'
            )
        tab = new_tab()
        page = tab.page
        page.goto(listed.url)
        chat = page.locator("parley-chat")
        expect(chat.locator(".conn")).to_have_attribute("data-state", "connected")
        chat.get_by_role("textbox", name="Message").fill("hello from the shop")
        chat.get_by_role("textbox", name="Message").press("Enter")
        expect(chat.locator(".msg-assistant .msg-body strong")).to_have_text("hello from the shop")
        page.reload()  # the same visitor again: its token is kept in this origin's storage
        expect(page.locator("parley-chat .msg-user .msg-body")).to_have_text("hello from the shop")
        assert Visitor.objects.count() == 1
        assert tab.errors == []

        other = new_tab()
        other.page.goto(unlisted.url)
        conn = other.page.locator("parley-chat .conn")
        expect(conn).to_have_attribute("data-state", "reconnecting")  # refused: no ticket
        time.sleep(1.5)
        assert conn.get_attribute("data-state") != "connected"
        assert Visitor.objects.count() == 1
    finally:
        listed.stop()
        unlisted.stop()


def test_a_question_asked_during_an_answer_waits_and_is_answered_after_it(
    servers, alice, private_room, new_tab
):
    from playwright.sync_api import expect

    server = servers(env=backend_env(SLOW), name="browser-queue")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    send(tab, "first question")
    expect(page.locator(".msg-assistant")).to_have_attribute("data-status", "streaming")
    for text in ("second question", "third question"):
        send(tab, text)
    waiting = page.locator(".msg-user .badge-waiting")
    expect(waiting).to_have_count(2)
    expect(waiting.first).to_have_text("Waiting")
    tab.shot("queue-waiting")
    third = page.locator(".msg-user").nth(2)
    third.get_by_role("button", name="Withdraw").click()
    expect(page.locator(".msg-user .badge-waiting")).to_have_count(1)

    page.get_by_role("button", name="Stop").click()  # the first answer ends: the second starts
    answers = page.locator(".msg-assistant")
    expect(answers).to_have_count(2)
    expect(answers.nth(1)).to_have_attribute("data-status", "streaming")
    expect(page.locator(".msg-user .badge-waiting")).to_have_count(0)
    page.get_by_role("button", name="Stop").click()
    expect(answers.nth(1)).to_have_attribute("data-status", "cancelled")
    replies = list(
        Message.objects.filter(room=private_room, role="assistant").values_list(
            "reply_to__text", flat=True
        )
    )
    assert replies == ["first question", "second question"]  # the withdrawn one: none
    assert tab.errors == []


def test_rooms_are_managed_and_every_open_page_follows_live(servers, alice, bob, new_tab):
    """Alice's room list shows Bob's invitation the moment he sends it; she accepts. Bob
    renames the room: her open page shows the new title. He deletes it, after a page that
    says what goes: her page says the room was deleted and stops reconnecting. No reload
    on her side, at any point."""
    from playwright.sync_api import expect

    server = servers(name="browser-manage")
    mine, his = new_tab(), new_tab()
    log_in(mine, server, "alice")
    log_in(his, server, "bob")
    page, bob_page = mine.page, his.page
    expect(page.locator(".invitation")).to_have_count(0)

    bob_page.get_by_label("Title").fill("Trip")
    bob_page.get_by_label("Shared").check()
    bob_page.get_by_role("button", name="Create room").click()
    expect(bob_page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    bob_page.get_by_label("Invite by username").fill("alice")
    bob_page.get_by_role("button", name="Invite").click()

    invitation = page.locator(".invitation")
    expect(invitation).to_contain_text("bob invited you to Trip")
    expect(page.locator("#rooms-status")).to_have_text("New invitation: bob invited you to Trip.")
    mine.shot("invitation-live")
    invitation.get_by_role("button", name="Accept").click()
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#room-title")).to_have_text("Trip")

    bob_page.get_by_label("Title", exact=True).fill("Trip 2026")
    bob_page.get_by_role("button", name="Rename").click()
    expect(page.locator("#room-title")).to_have_text("Trip 2026")
    assert page.title() == "Trip 2026 · Parley"

    bob_page.get_by_role("link", name="Delete room…").click()
    expect(bob_page.locator(".confirm")).to_contain_text("Its 0 messages will be deleted")
    his.shot("delete-confirm")
    bob_page.get_by_role("button", name="Delete the room and its messages").click()
    expect(bob_page.locator(".flash")).to_contain_text("and its 0 messages were deleted")
    expect(bob_page.locator(".room-card")).to_have_count(0)
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "offline")
    expect(page.locator("#connection-state")).to_contain_text("this room was deleted")
    mine.shot("room-deleted")
    assert mine.errors == [] and his.errors == []


def test_a_message_not_yet_sent_survives_a_reload_and_a_new_login_and_is_sent_once(
    servers, alice, private_room, new_tab
):
    """Alice's page cannot reach the room's socket (the route drops it) and she sends a
    message: it waits. She reloads: it is still there, waiting. She logs out and in again:
    still there. The socket comes back: it is sent, once, and answered; reloading again
    sends nothing more, and the browser keeps nothing of it."""
    from playwright.sync_api import expect

    server = servers(env=backend_env(FAST), name="browser-outbox")
    tab = new_tab()
    page = tab.page
    socket_allowed = False

    def room_socket(ws: Any) -> None:
        if socket_allowed:
            ws.connect_to_server()
        else:
            ws.close(code=1011, reason="unreachable for the test")

    page.context.route_web_socket(re.compile(r"/ws/rooms/"), room_socket)
    log_in(tab, server, "alice")
    page.get_by_role("link", name=private_room.title).click()
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "reconnecting")
    send(tab, "kept for later")
    pending = page.locator(".msg-pending")
    expect(pending.locator(".msg-body")).to_have_text("kept for later")

    page.reload()
    expect(pending.locator(".msg-body")).to_have_text("kept for later")
    expect(pending.locator(".badge")).to_have_text("Waiting for connection…")
    tab.shot("outbox-after-reload")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login/**")
    log_in(tab, server, "alice")
    page.get_by_role("link", name=private_room.title).click()
    expect(pending.locator(".msg-body")).to_have_text("kept for later")

    socket_allowed = True
    retry_now(page)
    expect(state).to_have_attribute("data-state", "connected")
    expect(pending).to_have_count(0)
    expect(page.locator(".msg-user .msg-body")).to_have_text(["kept for later"])
    expect(page.locator(".msg-assistant[data-status=complete]")).to_have_count(1)
    page.reload()
    expect(state).to_have_attribute("data-state", "connected")
    expect(page.locator(".msg-user")).to_have_count(1)
    assert Message.objects.filter(room=private_room, text="kept for later").count() == 1
    stored = "() => Object.keys(localStorage).filter(key => key.startsWith('parley.outbox'))"
    assert page.evaluate(stored) == []


def alice_and_bob(servers: Any, new_tab: Any, room: Any, name: str) -> tuple[Tab, Tab]:
    """Alice's tab and Bob's, each open on ``room``, of a new server answering with FAST."""
    server = servers(env=backend_env(FAST), name=name)
    tabs = new_tab(), new_tab()
    for tab, username in zip(tabs, ("alice", "bob"), strict=True):
        log_in(tab, server, username)
        open_room(tab, room)
    return tabs


def test_an_answer_is_regenerated_and_its_versions_are_stepped_through(
    servers, alice, bob, shared_room, new_tab
):
    """Alice asks for an answer again: the new version takes the answer's place, for Bob
    too, with ‹ 2/2 ›; stepping back shows the first, in the same place. After a reload,
    the newest shows again, with its versions."""
    from playwright.sync_api import expect

    tab, watcher = alice_and_bob(servers, new_tab, shared_room, "browser-regenerate")
    page = tab.page
    send(tab, "plan")
    answers = page.locator(".msg-assistant")
    expect(answers.locator("visible=true")).to_have_count(1)
    first = answers.first.get_attribute("data-seq")
    expect(answers.first).to_have_attribute("data-status", "complete")
    answers.first.get_by_role("button", name="Regenerate this answer").click()

    for p in (page, watcher.page):
        shown = p.locator(".msg-assistant:visible")
        expect(shown).to_have_count(1)
        expect(shown).to_have_attribute("data-status", "complete")
        expect(shown.locator(".version-count")).to_have_text("2/2")
        assert shown.get_attribute("data-seq") != first
    tab.shot("regenerated")
    page.get_by_role("button", name="Previous version").click()
    shown = page.locator(".msg-assistant:visible")
    expect(shown.locator(".version-count")).to_have_text("1/2")
    assert shown.get_attribute("data-seq") == first
    expect(page.get_by_role("button", name="Previous version")).to_be_disabled()
    # The answer keeps its place: right after the question, before what came next.
    send(tab, "next")
    expect(page.locator(".msg-assistant:visible")).to_have_count(2)
    order = page.locator("#messages > li:visible").evaluate_all(
        "els => els.map(e => e.dataset.role)"
    )
    assert order == ["user", "assistant", "user", "assistant"]

    page.reload()
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(page.locator(".msg-assistant:visible").first.locator(".version-count")).to_have_text(
        "2/2"
    )
    assert Message.objects.filter(room=shared_room, role="assistant").count() == 3
    assert tab.errors == [] and watcher.errors == []


def test_a_question_is_edited_in_its_place_and_its_answers_follow_the_version_shown(
    servers, alice, bob, shared_room, new_tab
):
    """Alice edits her first question in a shared room: the new version takes its place,
    with its own answer, for Bob too (who cannot edit it); stepping back to the first
    version shows the first answer again, which cannot be asked for again. A reload shows
    the newest again."""
    from playwright.sync_api import expect

    tab, watcher = alice_and_bob(servers, new_tab, shared_room, "browser-edit")
    page = tab.page
    send(tab, "plan")
    expect(page.locator(".msg-assistant[data-status=complete]")).to_have_count(1)
    first_answer = page.locator(".msg-assistant").first.get_attribute("data-seq")
    send(tab, "next")
    expect(page.locator(".msg-assistant[data-status=complete]")).to_have_count(2)

    question = page.locator(".msg-user").first
    question.get_by_role("button", name="Edit this message").click()
    editor = question.get_by_role("textbox", name="Your message, edited")
    expect(editor).to_have_value("plan")
    expect(question.get_by_role("button", name="Send")).to_be_disabled()  # unchanged
    editor.fill("deploy plan")
    tab.shot("editing")
    editor.press("Enter")

    for p in (page, watcher.page):
        expect(p.locator(".msg-user:visible .msg-body")).to_have_text(["deploy plan", "next"])
        expect(p.locator(".msg-assistant:visible[data-status=complete]")).to_have_count(2)
        order = p.locator("#messages > li:visible").evaluate_all(
            "els => els.map(e => e.dataset.role)"
        )
        assert order == ["user", "assistant", "user", "assistant"]
        expect(p.locator(".msg-user:visible").first.locator(".version-count")).to_have_text("2/2")
        assert p.locator(".msg-assistant:visible").first.get_attribute("data-seq") != first_answer
    expect(watcher.page.get_by_role("button", name="Edit this message")).to_have_count(0)
    tab.shot("edited")

    page.locator(".msg-user:visible").first.get_by_role("button", name="Previous version").click()
    expect(page.locator(".msg-user:visible .msg-body")).to_have_text(["plan", "next"])
    shown = page.locator(".msg-assistant:visible").first
    assert shown.get_attribute("data-seq") == first_answer
    expect(shown.get_by_role("button", name="Regenerate this answer")).to_be_hidden()
    # Bob still sees the newest: stepping is each reader's own.
    expect(watcher.page.locator(".msg-user:visible .msg-body")).to_have_text(
        ["deploy plan", "next"]
    )

    page.reload()
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    expect(page.locator(".msg-user:visible .msg-body")).to_have_text(["deploy plan", "next"])
    expect(page.locator(".msg-user:visible").first.locator(".version-count")).to_have_text("2/2")
    edited = Message.objects.get(room=shared_room, text="deploy plan")
    assert edited.version_of == Message.objects.get(room=shared_room, text="plan")
    assert Message.objects.filter(room=shared_room, reply_to=edited).count() == 1
    assert tab.errors == [] and watcher.errors == []


def test_a_question_being_answered_waits_to_be_edited_and_a_refused_edit_keeps_its_text(
    servers, alice, private_room, new_tab
):
    """While its answer streams a question has no Edit button (the edit would hide that
    answer); Escape anywhere in the editor puts it away. An edit the server refuses (the
    answer was asked for again from another tab meanwhile) comes back in the editor with
    what was typed; once the answer is stopped it is sent."""
    from playwright.sync_api import expect

    server = servers(env=backend_env(SLOW), name="browser-edit-refused")
    tab, other = new_tab(), new_tab()
    for t in (tab, other):
        log_in(t, server, "alice")
        open_room(t, private_room)
    page = tab.page
    send(tab, "plan")
    question = page.locator(".msg-user").first
    expect(page.locator(".msg-assistant")).to_have_attribute("data-status", "streaming")
    expect(question.get_by_role("button", name="Edit this message")).to_be_hidden()
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".msg-assistant")).to_have_attribute("data-status", "cancelled")

    edit = question.get_by_role("button", name="Edit this message")
    edit.click()
    question.get_by_role("button", name="Cancel").focus()
    page.keyboard.press("Escape")
    expect(question.get_by_role("textbox", name="Your message, edited")).to_have_count(0)
    expect(edit).to_be_focused()

    edit.click()
    editor = question.get_by_role("textbox", name="Your message, edited")
    editor.fill("deploy plan")
    other.page.get_by_role("button", name="Retry this answer").click()
    expect(page.locator(".msg-assistant[data-status=streaming]")).to_have_count(1)
    editor.press("Enter")
    expect(page.locator("#notice")).to_contain_text("being answered")
    expect(editor).to_have_value("deploy plan")
    tab.shot("edit-refused")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".msg-assistant[data-status=streaming]")).to_have_count(0)
    question.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-user:visible .msg-body")).to_have_text(["deploy plan"])
    expect(page.locator("#composer-text")).to_be_focused()
    assert Message.objects.filter(room=private_room, text="deploy plan").count() == 1
    assert tab.errors == [] and other.errors == []


def render_out_of_order(servers, new_tab, name, renders):
    """In a page of Alice's, draw messages in a MessageList of their own, in the order of
    `renders` (each `(seq, id, role, text, extra fields)`); return the texts of all of its
    items, of those shown, and of those shown after stepping the first question back, and
    the page's errors."""
    tab = new_tab()
    log_in(tab, servers(name=name), "alice")
    order = tab.page.evaluate(
        """async (renders) => {
          const { MessageList } = await import("/static/parley/messages.js");
          const list = document.createElement("ol");
          document.body.append(list);
          const messages = new MessageList(list, () => ({ id: 1, name: "alice" }));
          for (const [seq, id, role, text, extra] of renders) {
            messages.render({
              seq, id, role, text, status: "complete", author: role === "user" ? { id: 1 } : null,
              html: `<p>${text}</p>`, ...extra,
            });
          }
          const texts = (lis) => lis.map((li) => li.parleyText);
          const shown = () => texts([...list.children].filter((li) => !li.hidden));
          const newest = shown();
          list.querySelector("[aria-label='Previous version']").click(); // the question's
          return { all: texts([...list.children]), newest, stepped: shown() };
        }""",
        renders,
    )
    return order, tab.errors


def test_versions_that_arrive_before_their_first_still_stand_in_its_place(servers, alice, new_tab):
    """Live frames may bring a later version while the history before it is still on its
    way: once the first version and the messages between come, the shown version stands
    in the first one's place, not after the messages it came before."""
    # Live first: an answer regenerated (id 30, a version of 2) and an edited question
    # (id 31, a version of 1); then the history: 1, 2, 3.
    order, errors = render_out_of_order(
        servers,
        new_tab,
        "browser-versions-order",
        [
            (30, 30, "assistant", "answer v2", {"version_of": 2, "reply_to": 1}),
            (31, 31, "user", "question v2", {"version_of": 1}),
            (1, 1, "user", "question v1", {}),
            (2, 2, "assistant", "answer v1", {"reply_to": 1}),
            (3, 3, "user", "later", {}),
        ],
    )
    assert order["all"] == ["question v1", "question v2", "answer v1", "answer v2", "later"]
    # The answers answer the question's first version: hidden under the second.
    assert order["newest"] == ["question v2", "later"]
    assert order["stepped"] == ["question v1", "answer v2", "later"]
    assert errors == []


def test_answers_that_arrive_before_their_question_join_its_exchange(servers, alice, new_tab):
    """A page opened while an edited question is answered gets the edit and its answer
    live, before the history brings the question's first version and its answer (and an
    answer can even come before the question it answers): each answer still stands under
    the version it answers, and shows only with it."""
    order, errors = render_out_of_order(
        servers,
        new_tab,
        "browser-answers-order",
        [
            (31, 31, "user", "question v2", {"version_of": 1}),
            (32, 32, "assistant", "answer to v2", {"reply_to": 31}),
            (41, 41, "assistant", "answer to later", {"reply_to": 40}),
            (1, 1, "user", "question v1", {}),
            (2, 2, "assistant", "answer to v1", {"reply_to": 1}),
            (3, 3, "user", "between", {}),
            (40, 40, "user", "later", {}),
        ],
    )
    assert order["all"] == [
        "question v1",
        "question v2",
        "answer to v1",
        "answer to v2",
        "between",
        "later",
        "answer to later",
    ]
    assert order["newest"] == ["question v2", "answer to v2", "between", "later", "answer to later"]
    assert order["stepped"] == [
        "question v1",
        "answer to v1",
        "between",
        "later",
        "answer to later",
    ]
    assert errors == []
