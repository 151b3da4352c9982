"""Feedback in a real browser (Debian's chromium driven by Playwright) against a uvicorn
server answering with the offline assistant from an indexed document: on the room page and
in the widget, thumbs down with a comment, kept through a reload, stored with the answer's
sources and model."""

from __future__ import annotations

import json

import pytest

from parley.models import Feedback
from tests.feedback.conftest import FERRY, OFFLINE, QUESTION
from tests.test_browser import backend_env, log_in, open_room, send

pytestmark = [pytest.mark.browser, pytest.mark.server]


def rate_down_with_a_comment(scope, comment: str) -> None:
    """In ``scope`` (the page, or the widget), the finished answer gets thumbs down, then
    ``comment`` in the box that opens."""
    from playwright.sync_api import expect

    answer = scope.locator(".msg-assistant")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".msg-body")).to_contain_text(FERRY)
    down = answer.get_by_role("button", name="Bad answer")
    expect(down).to_have_attribute("aria-pressed", "false")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    box = answer.get_by_role("textbox", name="Your comment on this answer (optional)")
    expect(box).to_be_focused()
    box.fill(comment)
    answer.get_by_role("button", name="Send").click()
    expect(answer.locator(".feedback-comment")).to_have_text(comment)
    expect(box).to_be_hidden()


def still_shown(scope, comment: str) -> None:
    from playwright.sync_api import expect

    answer = scope.locator(".msg-assistant")
    expect(answer.get_by_role("button", name="Bad answer")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(answer.get_by_role("button", name="Good answer")).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(answer.locator(".feedback-comment")).to_have_text(comment)
    expect(answer.locator(".feedback-comment b")).to_have_count(0)  # text, never markup


def stored(comment: str) -> Feedback:
    row = Feedback.objects.select_related("answer").get()
    assert (row.rating, row.comment) == ("down", comment)
    assert row.question == QUESTION and FERRY in row.answer_text
    assert row.model == "offline assistant" == row.answer.model
    assert [s["document"] for s in row.sources] == ["files:kb/travel.md"]
    assert row.answer.sources == row.sources
    return row


def test_the_room_page_rates_an_answer_and_shows_it_after_a_reload(
    servers, offline, alice, bob, shared_room, new_tab
):
    from playwright.sync_api import expect

    server = servers(env=backend_env(OFFLINE), name="browser-feedback")
    rater, other = new_tab(), new_tab()
    for tab, name in ((rater, "alice"), (other, "bob")):
        log_in(tab, server, name)
        open_room(tab, shared_room)
    send(rater, QUESTION)
    comment = "Say which <b>pier</b>, and when it is back."
    rate_down_with_a_comment(rater.page, comment)
    rater.shot("feedback-room")

    rater.page.reload()
    expect(rater.page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    still_shown(rater.page, comment)
    # The other member sees the answer and their own, empty, controls: nothing of alice's.
    theirs = other.page.locator(".msg-assistant")
    expect(theirs).to_have_attribute("data-status", "complete")
    expect(theirs.get_by_role("button", name="Bad answer")).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(theirs.locator(".feedback-comment")).to_be_hidden()
    assert stored(comment).user == alice
    assert rater.errors == [] and other.errors == []


def test_the_widget_rates_an_answer_and_shows_it_after_a_reload(servers, offline, new_tab):
    # Visitors may read the site's files (VISITORS["KNOWLEDGE"]): the answer has a source.
    options = {"VISITORS": {"ENABLED": True, "KNOWLEDGE": True}}
    env = {**backend_env(OFFLINE), "PARLEY_TEST_OPTIONS": json.dumps(options)}
    server = servers(env=env, name="browser-feedback-widget")
    tab = new_tab()
    page = tab.page
    page.goto(f"{server.http_url}/site/")
    chat = page.locator(".home-chat parley-chat")
    chat.get_by_role("textbox", name="Message").fill(QUESTION)
    chat.get_by_role("textbox", name="Message").press("Enter")
    comment = "Right, but the pier's name would help."
    rate_down_with_a_comment(chat, comment)
    tab.shot("feedback-widget")

    page.reload()
    chat = page.locator(".home-chat parley-chat")
    still_shown(chat, comment)
    row = stored(comment)
    assert row.visitor is not None and row.user is None
    assert tab.errors == []
