"""Searching from the room list in a real browser (Debian's chromium, Playwright) against a
real server: a hit opens its room on its message, however far back in the history."""

from __future__ import annotations

import pytest
from django.utils import timezone

from parley.models import Message, Room
from tests.test_browser import FAST, backend_env, log_in

pytestmark = [pytest.mark.browser, pytest.mark.server]

TARGET = 250  # in the second page of history (HISTORY_PAGE_SIZE, 200), far from either end


def test_a_hit_opens_its_room_scrolled_to_the_message(servers, alice, private_room, new_tab):
    from playwright.sync_api import expect

    now = timezone.now()
    texts = {TARGET: "the lighthouse keeper's <b>secret</b> log"}
    Message.objects.bulk_create(
        Message(
            room=private_room,
            seq=seq,
            role=Message.Role.USER,
            author=alice,
            text=texts.get(seq, f"ordinary note number {seq}"),
            created_at=now,
            updated_at=now,
        )
        for seq in range(1, 601)
    )
    Room.objects.filter(pk=private_room.pk).update(last_seq=600)
    server = servers(env=backend_env(FAST), name="browser-search")
    tab = new_tab()
    page = tab.page
    log_in(tab, server, "alice")

    page.get_by_role("searchbox").fill("lighthouse secret")
    page.get_by_role("button", name="Search").click()
    hits = page.get_by_role("list", name="Messages found").get_by_role("link")
    expect(hits).to_have_count(1)
    expect(hits.locator(".search-hit-room")).to_have_text("Notes")
    expect(hits.locator("mark")).to_have_text(["lighthouse", "secret"])
    expect(hits.locator(".search-hit-snippet")).to_have_text(
        "the lighthouse keeper's <b>secret</b> log"
    )

    hits.click()
    page.wait_for_url(f"**/rooms/{private_room.public_id}/#message-{TARGET}")
    found = page.locator(f"#message-{TARGET}")
    expect(page.locator("#messages > li")).to_have_count(600)
    expect(found).to_have_class("msg msg-user msg-mine msg-found")
    expect(found).to_be_focused()
    expect(found).to_be_in_viewport()
    expect(page.locator("#message-600")).not_to_be_in_viewport()
    tab.shot("search-hit")
    assert tab.errors == []
