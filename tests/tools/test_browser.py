"""Tool steps and the approval card in a real browser (Debian's chromium driven by
Playwright), against a uvicorn server whose model is the fake OpenAI server: the card
survives a reload, its arguments are edited and approved, and the step shows what ran."""

from __future__ import annotations

import json

import pytest

from tests.openai_server import Script
from tests.test_browser import XSS, backend_env, log_in, open_room, send
from tests.tools import sample

pytestmark = [pytest.mark.browser, pytest.mark.server]


def test_a_call_waits_on_its_card_through_a_reload_and_runs_as_edited(
    servers, fake_openai, alice, bob, shared_room, new_tab
):
    from playwright.sync_api import expect

    backend = sample.offering(fake_openai.base_url, "order_status", "pin")
    server = servers(env=backend_env(backend), name="browser-tools")
    fake_openai.enqueue(
        Script(tokens=["Looking."], tool_calls=[("order_status", '{"number": 12}')]),
        Script(tokens=["It shipped. Pinning it."], tool_calls=[("pin", json.dumps({"text": XSS}))]),
        Script(tokens=["Pinned for everyone."]),
    )
    asker, other = new_tab(), new_tab()
    for tab, name in ((asker, "alice"), (other, "bob")):
        log_in(tab, server, name)
        open_room(tab, shared_room)
    send(asker, "Is order 12 out? Pin it")

    page = asker.page
    card = page.get_by_role("group", name="Approve the tool pin?")
    expect(card).to_be_visible()
    expect(card.locator(".tool-arguments")).to_have_value(json.dumps({"text": XSS}, indent=2))
    done_step = page.locator(".tool-step.tool-done")
    expect(done_step.locator(".tool-summary")).to_contain_text("order_status")
    # The other member sees the call wait, with no buttons: only the asker decides here.
    expect(other.page.locator(".tool-approval .tool-waiting")).to_be_visible()
    expect(other.page.locator(".tool-approval button")).to_have_count(0)
    asker.shot("tool-approval")

    page.reload()  # the wait is in the database, not in the page
    card = page.get_by_role("group", name="Approve the tool pin?")
    expect(card).to_be_visible()
    arguments = card.locator(".tool-arguments")
    arguments.fill("not json")
    card.get_by_role("button", name="Approve pin").click()
    expect(card.locator(".tool-problem")).to_have_text("The arguments must be a JSON object.")
    arguments.fill('{"text": "standup at 10"}')
    card.get_by_role("button", name="Approve pin").click()

    answer = page.locator(".msg-assistant")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".msg-body")).to_contain_text("Pinned for everyone.")
    pinned = answer.locator(".tool-step.tool-done").nth(1)
    pinned.locator("summary").click()  # collapsed until opened
    expect(pinned).to_contain_text("Edited before it ran.")
    expect(pinned).to_contain_text("Approved by alice")
    expect(pinned.locator(".tool-value").first).to_have_text('{"text": "standup at 10"}')
    expect(pinned.locator(".tool-value").last).to_contain_text("Pinned: standup at 10")
    for tab in (asker, other):  # the hostile arguments were shown as text, never as markup
        expect(tab.page.locator(".msg-tools img")).to_have_count(0)
    expect(other.page.locator(".msg-assistant .tool-step.tool-done")).to_have_count(2)
    assert len(fake_openai.exchanges) == 3
    asker.shot("tool-done")


def test_the_widget_shows_the_steps_and_the_card_and_approves(servers, fake_openai, alice, new_tab):
    """<parley-chat> on the example site's page, for a logged-in user: the same steps and
    card, in the widget's shadow root, under the site's strict CSP."""
    from playwright.sync_api import expect

    backend = sample.offering(fake_openai.base_url, "order_status", "pin")
    server = servers(env=backend_env(backend), name="browser-widget-tools")
    fake_openai.enqueue(
        Script(tokens=[], tool_calls=[("order_status", '{"number": 7}'), ("pin", '{"text": "7"}')]),
        Script(tokens=["Order 7 shipped, and I pinned it."]),
    )
    tab = new_tab()
    log_in(tab, server, "alice")
    page = tab.page
    page.goto(f"{server.http_url}/site/")
    chat = page.locator(".home-chat parley-chat")
    expect(chat.locator(".conn")).to_have_attribute("data-state", "connected")
    chat.get_by_role("textbox", name="Message").fill("Where is order 7? Pin it.")
    chat.get_by_role("textbox", name="Message").press("Enter")

    expect(chat.locator(".tool-step.tool-done .tool-summary")).to_contain_text("order_status")
    card = chat.get_by_role("group", name="Approve the tool pin?")
    expect(card).to_be_visible()
    tab.shot("widget-tool-approval")
    card.get_by_role("button", name="Approve pin").click()
    answer = chat.locator(".msg-assistant")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".msg-body")).to_contain_text("Order 7 shipped")
    expect(answer.locator(".tool-step.tool-done")).to_have_count(2)
    assert tab.errors == []
