"""The search box of the room list: a GET form that works without a script."""

from __future__ import annotations

import pytest
from django.urls import reverse

from parley.rooms import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob)
    return client


def search(client, query: str, **params) -> str:
    response = client.get(reverse("parley:rooms"), {"q": query, **params})
    assert response.status_code == 200
    return response.content.decode()


def test_hits_link_to_the_message_in_its_room(bob_client, alice, shared_room):
    services.message_post(room=shared_room, author=alice, text="the quarterly budget is due")
    page = search(bob_client, "budget")
    link = reverse("parley:room", kwargs={"public_id": shared_room.public_id}) + "#message-1"
    assert f'href="{link}"' in page
    assert "<mark>budget</mark>" in page
    assert ">Team</bdi>" in page and ">alice</bdi>" in page
    assert 'value="budget"' in page


def test_message_text_is_escaped_in_results(bob_client, alice, shared_room):
    services.message_post(
        room=shared_room, author=alice, text='payload <script>alert("x")</script> <b>bold</b>'
    )
    page = search(bob_client, "payload script")
    assert "<script>alert" not in page and "<b>bold" not in page
    assert "&lt;<mark>script</mark>&gt;alert(&quot;x&quot;)&lt;/<mark>script</mark>&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page


def test_the_query_is_escaped_where_it_is_shown(bob_client):
    page = search(bob_client, '"><img src=x onerror=alert(1)>')
    assert "<img src=x" not in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_no_search_no_results_and_no_match_says_so(bob_client, alice, shared_room):
    services.message_post(room=shared_room, author=alice, text="anything at all")
    assert "search-results" not in search(bob_client, "")
    assert "No messages of your rooms match" in search(bob_client, "nowhere")
    plain = bob_client.get(reverse("parley:rooms")).content.decode()
    assert "No messages of your rooms match" not in plain and "search-results" not in plain


def test_a_query_too_long_is_refused_with_a_message(bob_client, settings):
    settings.PARLEY = {"SEARCH_MAX_QUERY_CHARS": 20}
    page = search(bob_client, "x" * 21)
    assert "Search for at most 20 characters." in page and 'aria-invalid="true"' in page


def test_results_come_a_page_at_a_time(bob_client, alice, shared_room, settings):
    settings.PARLEY = {"SEARCH_PAGE_SIZE": 2}
    for n in range(5):
        services.message_post(room=shared_room, author=alice, text=f"heron number {n}")
    first, third = search(bob_client, "heron"), search(bob_client, "heron", results="3")
    assert first.count('class="search-hit"') == 2 and "results=2" in first
    assert third.count('class="search-hit"') == 1 and "results=2" in third
    assert "results=4" not in third
    assert search(bob_client, "heron", results="junk").count('class="search-hit"') == 2


def test_a_room_left_is_searched_no_more(bob_client, alice, bob, shared_room):
    services.message_post(room=shared_room, author=alice, text="offsite agenda")
    assert "<mark>offsite</mark>" in search(bob_client, "offsite")
    services.room_member_remove(room=shared_room, user=bob, by=alice)
    assert "<mark>offsite</mark>" not in search(bob_client, "offsite")
