"""The embedded chat's endpoint (chat/session/): who asks, their conversation, a ticket."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.core import signing
from django.urls import reverse

from parley.models import Message, Room, Visitor
from parley.visitors.services import SESSION_VISITOR, identity_signature

pytestmark = pytest.mark.django_db

SITE = "http://testserver"
EMBED = "https://shop.example"  # another site, listed in EMBED_ORIGINS


@pytest.fixture
def visitors(settings):
    settings.PARLEY = {"VISITORS": {"ENABLED": True, "IDENTITY_KEY": "k" * 32},
                       "EMBED_ORIGINS": [EMBED]}  # fmt: skip
    return settings


def ask(client, origin: str | None = SITE, body: str = "{}"):
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    return client.post(reverse("parley:chat-session"), body, content_type="text/plain", **headers)


def test_without_visitors_only_a_logged_in_user_gets_a_conversation(client, alice):
    refused = ask(client)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "login_required"
    assert Room.objects.count() == 0

    client.force_login(alice)
    first, again = ask(client).json(), ask(client).json()
    assert first["room"]["id"] == again["room"]["id"]  # one conversation, found again
    room = Room.objects.get(public_id=first["room"]["id"])
    assert room.owner == alice and room.widget and room.kind == "private"
    assert first["socket"].startswith(f"/ws/rooms/{room.public_id}/?ticket=")
    assert first["socket"] != again["socket"]  # a fresh single-use ticket each time
    assert first["user"] == {"name": "alice"} and first["visitor"] is None


def test_a_visitor_is_found_again_by_its_session_and_gets_only_its_own_conversation(
    client, visitors
):
    first = ask(client).json()
    again = ask(client).json()
    assert first["room"]["id"] == again["room"]["id"]
    assert first["user"] is None and first["visitor"] is None  # the session keeps it
    visitor = Visitor.objects.get()
    assert client.session[SESSION_VISITOR] == visitor.public_id
    assert Room.objects.get(visitor=visitor).owner is None

    stranger = ask(client.__class__()).json()  # another browser: another conversation
    assert stranger["room"]["id"] != first["room"]["id"]
    assert Visitor.objects.count() == 2


def test_origins_other_than_the_site_and_its_listed_embeds_are_refused(client, visitors):
    for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
        response = ask(client, origin)
        assert response.status_code == 403, origin
        assert "Access-Control-Allow-Origin" not in response
    assert Visitor.objects.count() == 0


def test_an_embed_on_a_listed_origin_is_a_visitor_by_token_and_never_by_cookie(
    client, visitors, alice
):
    client.force_login(alice)  # the site's cookie, which a cross-origin embed must not use
    response = ask(client, EMBED)
    assert response["Access-Control-Allow-Origin"] == EMBED
    first = response.json()
    assert first["user"] is None and first["visitor"]
    assert Room.objects.get(public_id=first["room"]["id"]).visitor is not None

    body = f'{{"visitor": "{first["visitor"]}"}}'
    assert ask(client, EMBED, body).json()["room"]["id"] == first["room"]["id"]
    forged = signing.dumps("someone-else", salt="parley.visitor")[:-2] + "xx"
    assert (
        ask(client, EMBED, f'{{"visitor": "{forged}"}}').json()["room"]["id"]
        != (first["room"]["id"])
    )
    preflight = client.options(reverse("parley:chat-session"), HTTP_ORIGIN=EMBED)
    assert preflight.status_code == 204 and preflight["Access-Control-Allow-Origin"] == EMBED


def test_a_signed_identity_finds_the_same_conversation_and_a_forged_one_nothing(client, visitors):
    good = f'{{"identity": "cust-42", "identity_hash": "{identity_signature("cust-42")}"}}'
    first = ask(client.__class__(), EMBED, good).json()
    second = ask(client.__class__(), EMBED, good).json()  # another device
    assert first["room"]["id"] == second["room"]["id"]
    assert first["visitor"] is None  # the identity finds it: no token to keep

    bad = f'{{"identity": "cust-43", "identity_hash": "{identity_signature("cust-42")}"}}'
    refused = ask(client, EMBED, bad)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "identity_refused"
    assert Visitor.objects.filter(identity="cust-43").count() == 0


@pytest.mark.parametrize("limit", ["NEW_VISITORS", "CHAT_SESSIONS"])
def test_the_endpoint_is_rate_limited_per_client_address_before_it_writes(client, visitors, limit):
    """New visitors per address, and requests per address: each written row (a visitor, a
    session, a ticket) is counted before it is written."""
    visitors.PARLEY = {**visitors.PARLEY, "RATE_LIMITS": {limit: (0.001, 3)}}
    codes = [ask(client.__class__()).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert Visitor.objects.count() == 3
    assert Session.objects.count() == 3  # refused requests saved no session either


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"visitor": 5}', "x" * 5000])
def test_bad_bodies_get_a_clear_error(client, visitors, body):
    response = ask(client, body=body)
    assert response.status_code in (400, 413)
    assert response.json()["error"]["detail"]
    assert Visitor.objects.count() == 0


def test_after_logging_in_the_widget_goes_on_in_the_conversation_just_carried_over(
    client, visitors, alice
):
    client.force_login(alice)
    older = ask(client).json()["room"]["id"]  # alice's own, from another day, empty
    client.logout()
    as_visitor = ask(client).json()["room"]["id"]
    room = Room.objects.get(public_id=as_visitor)
    Message.objects.create(room=room, seq=1, role="user", text="asked before logging in")

    client.post(reverse("login"), {"username": "alice", "password": "secret-pass-123"})
    assert ask(client).json()["room"]["id"] == as_visitor != older
    room.refresh_from_db()
    assert room.owner == alice and room.messages.get().author == alice


def test_the_admin_lists_visitors_with_their_conversations(admin_client, visitors):
    ask(admin_client.__class__())
    visitor = Visitor.objects.get()
    listing = admin_client.get(reverse("admin:parley_visitor_changelist")).content.decode()
    assert visitor.public_id in listing
    page = admin_client.get(reverse("admin:parley_visitor_change", args=[visitor.pk]))
    assert "Conversation with the assistant" in page.content.decode()


def test_an_identified_visitor_is_not_kept_by_the_session(client, visitors):
    """The next person at that browser, with no identity, gets a conversation of their own."""
    good = f'{{"identity": "cust-42", "identity_hash": "{identity_signature("cust-42")}"}}'
    identified = ask(client, body=good).json()["room"]["id"]
    assert SESSION_VISITOR not in client.session
    assert ask(client).json()["room"]["id"] != identified


@pytest.mark.parametrize(
    "identity, signature",
    [("cust-42", "é" * 64), ("cust-42", "abc"), ("x" * 151, "0" * 64)],
)
def test_malformed_identities_are_refused_not_errors(client, visitors, identity, signature):
    response = ask(client, EMBED, f'{{"identity": "{identity}", "identity_hash": "{signature}"}}')
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "identity_refused"
