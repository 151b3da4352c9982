"""A room whose oldest messages were pruned still works: a resume from before them, or from
a pruned number, gets what is left; new messages go on from the room's last number; the
room page shows what is left and answers as before."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from parley.retention.services import room_prune, room_prune_plan
from tests.retention.conftest import exchanges
from tests.test_browser import FAST, backend_env, log_in, open_room, send


def pruned(room, author) -> None:
    """Six messages past a 30-day retention, two recent ones after them; pruned."""
    exchanges(room, 3, author=author, days=40)
    [(question, answer)] = exchanges(room, 1, author=author, days=1)
    cutoff = timezone.now() - timedelta(days=30)
    plan = room_prune_plan(room_id=room.pk, cutoff=cutoff, batch_size=500)
    assert room_prune(plan=plan, cutoff=cutoff) == (6, False)


@pytest.mark.django_db(transaction=True)
async def test_a_resume_after_pruned_messages_gets_what_is_left(
    connect, backend, private_room, alice
):
    await database_sync_to_async(pruned)(private_room, alice)
    client = await connect(private_room, alice)
    assert (await client.expect("hello"))["last_seq"] == 8
    for after in (0, 3):  # from the start, and from a number that is gone
        await client.send(type="resume", after=after)
        page = await client.expect("history")
        assert [m["seq"] for m in page["messages"]] == [7, 8]
        assert page["last_seq"] == 8 and not page["more"]
    await client.send(type="send", client_id="new", text="and now?")
    assert (await client.expect("ack"))["message"]["seq"] == 9
    assert (await client.expect("done"))["message"]["seq"] == 10


@pytest.mark.browser
@pytest.mark.server
def test_the_room_page_shows_what_is_left_and_goes_on(servers, alice, private_room, new_tab):
    from playwright.sync_api import expect

    pruned(private_room, alice)
    server = servers(env=backend_env(FAST), name="browser-pruned")
    tab = new_tab()
    log_in(tab, server, "alice")
    open_room(tab, private_room)
    messages = tab.page.locator("#messages > li")
    expect(messages).to_have_count(2)
    send(tab, "after the pruning")
    expect(tab.page.locator(".msg-assistant[data-status=complete]")).to_have_count(2)
    seqs = messages.evaluate_all("els => els.map(e => e.dataset.seq)")
    assert seqs == ["7", "8", "9", "10"]
    tab.page.reload()
    expect(messages).to_have_count(4)
    tab.shot("pruned")
    assert tab.errors == []
