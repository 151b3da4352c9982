"""Parley's pages: login, the room list, room creation, the room page and invitations."""

from __future__ import annotations

import pytest
from django.urls import reverse

from parley import services
from parley.models import Membership, Room

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def room_url(public_id: str) -> str:
    return reverse("parley:room", kwargs={"public_id": public_id})


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_pages_need_login(client, private_room):
    for url in (
        reverse("parley:rooms"),
        room_url(private_room.public_id),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
    response = client.post(reverse("parley:invite", kwargs={"public_id": private_room.public_id}))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_uses_parley_template(client, alice):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert "parley/login.html" in [t.name for t in response.templates]
    assert "Content-Security-Policy" in response
    response = client.post(
        reverse("login"), {"username": "alice", "password": "secret-pass-123"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("parley:rooms")
    assert b"alice" in response.content


def test_room_list_shows_only_my_rooms(alice_client, alice, bob, shared_room, private_room):
    bobs = services.room_create(owner=bob, title="Bob's secret plans", kind="private")
    response = alice_client.get(reverse("parley:rooms"))
    assert response.status_code == 200
    body = response.content.decode()
    assert shared_room.title in body and private_room.title in body
    assert "secret plans" not in body
    assert bobs.public_id not in body
    assert room_url(private_room.public_id) in body
    # The logged-in user and a POST logout form are shown.
    assert 'action="/logout/"' in body and 'method="post"' in body


@pytest.mark.parametrize("kind", ["private", "shared"])
def test_create_room(alice_client, alice, kind):
    response = alice_client.post(reverse("parley:rooms"), {"title": "  Trip  ", "kind": kind})
    room = Room.objects.get(title="Trip")
    assert response.status_code == 302
    assert response["Location"] == room_url(room.public_id)
    assert room.kind == kind
    assert room.owner == alice
    assert list(room.members.all()) == [alice]


def test_create_room_rejects_bad_input(alice_client):
    response = alice_client.post(reverse("parley:rooms"), {"title": "   ", "kind": "public"})
    assert response.status_code == 200  # the form again, with its errors
    assert not Room.objects.exists()
    errors = response.context["form"].errors
    assert "title" in errors and "kind" in errors


def test_room_page_for_members_only(client, alice, bob, make_user, shared_room, private_room):
    client.force_login(bob)
    assert client.get(room_url(shared_room.public_id)).status_code == 200
    assert client.get(room_url(private_room.public_id)).status_code == 404
    assert client.get(room_url("no-such-room")).status_code == 404
    carol = make_user("carol")
    client.force_login(carol)
    url = reverse("parley:invite", kwargs={"public_id": shared_room.public_id})
    assert client.post(url, {"username": "carol"}).status_code == 404
    assert not Membership.objects.filter(room=shared_room, user=carol).exists()


def test_room_page_carries_what_the_script_needs(alice_client, shared_room, private_room):
    body = alice_client.get(room_url(shared_room.public_id)).content.decode()
    assert f'data-room-id="{shared_room.public_id}"' in body
    assert 'id="connection-state"' in body
    assert 'type="module"' in body and "parley/chat.js" in body
    assert 'id="composer-ask"' in body  # shared rooms ask whether to call the assistant
    assert "<script>" not in body  # no inline scripts: CSP forbids them
    assert "bob" in body  # the member list
    private = alice_client.get(room_url(private_room.public_id))
    assert 'id="composer-ask"' not in private.content.decode()
    assert "Invite by username" not in private.content.decode()


def test_invite_flow(client, alice, bob, make_user):
    room = services.room_create(owner=alice, title="Team", kind="shared")
    client.force_login(alice)
    url = reverse("parley:invite", kwargs={"public_id": room.public_id})

    response = client.post(url, {"username": "bob"}, follow=True)
    assert response.redirect_chain[-1][0] == room_url(room.public_id)
    assert messages_of(response) == ["bob can now join this room."]
    assert services.room_is_member(room=room, user=bob)

    response = client.post(url, {"username": "bob"}, follow=True)
    assert messages_of(response) == ["bob is already in this room."]
    assert Membership.objects.filter(room=room, user=bob).count() == 1

    response = client.post(url, {"username": "nobody"}, follow=True)
    assert messages_of(response) == ["There is no user called “nobody”."]

    response = client.post(url, {"username": ""}, follow=True)
    assert messages_of(response) == ["Type the username of the person to invite."]

    # The invited member sees the room and may invite in turn.
    carol = make_user("carol")
    client.force_login(bob)
    assert client.get(reverse("parley:rooms")).content.decode().count(room.public_id) == 1
    client.post(url, {"username": "carol"})
    assert services.room_is_member(room=room, user=carol)


def test_invite_into_private_room_is_refused(alice_client, bob, private_room):
    url = reverse("parley:invite", kwargs={"public_id": private_room.public_id})
    response = alice_client.post(url, {"username": "bob"}, follow=True)
    assert messages_of(response) == [
        "Private rooms have one member; create a shared room to invite."
    ]
    assert not services.room_is_member(room=private_room, user=bob)


def test_invite_needs_post(alice_client, shared_room):
    url = reverse("parley:invite", kwargs={"public_id": shared_room.public_id})
    assert alice_client.get(url).status_code == 405


def test_csp_header_on_parley_pages(alice_client, shared_room):
    for url in (
        reverse("parley:rooms"),
        room_url(shared_room.public_id),
    ):
        csp = alice_client.get(url)["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["img-src"] == "'self' data:"
        assert directives["connect-src"] == "'self' ws://testserver wss://testserver"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["base-uri"] == "'none'"
        assert directives["form-action"] == "'self'"
        assert "unsafe-inline" not in csp


def test_csp_allows_wss_on_https(alice_client):
    response = alice_client.get(reverse("parley:rooms"), secure=True)
    assert "connect-src 'self' wss://testserver;" in response["Content-Security-Policy"]


def test_room_titles_are_escaped(alice_client, alice):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    room = services.room_create(owner=alice, title=evil, kind="shared")
    for url in (
        reverse("parley:rooms"),
        room_url(room.public_id),
    ):
        body = alice_client.get(url).content.decode()
        assert evil not in body
        assert "<img src=x" not in body
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


def test_usernames_are_escaped(client, make_user, alice):
    # create_user does not validate usernames, and custom user models may allow anything.
    mallory = make_user("<b>mallory</b>")
    room = services.room_create(owner=alice, title="Team", kind="shared")
    services.room_invite(room=room, by=alice, user=mallory)
    client.force_login(mallory)
    body = client.get(room_url(room.public_id)).content.decode()
    assert "<b>mallory</b>" not in body
    assert "&lt;b&gt;mallory&lt;/b&gt;" in body


def test_status_is_for_staff_only(client, alice, admin_user):
    client.force_login(alice)
    assert client.get(reverse("parley:status")).status_code == 404
    client.force_login(admin_user)
    body = client.get(reverse("parley:status")).json()
    assert set(body) == {"worker", "rooms", "sockets", "backlogged", "answers"}


def csp_of(response) -> dict[str, str]:
    csp = response["Content-Security-Policy"]
    return dict(d.strip().split(" ", 1) for d in csp.split(";"))


def test_every_response_carries_the_csp(client, alice, admin_user):
    """Error pages, the staff status JSON, redirects and the admin get the policy too
    (parley.middleware.ContentSecurityPolicyMiddleware, installed by the example project)."""
    responses = [client.get("/no-such-page/"), client.get(reverse("parley:rooms"))]
    client.force_login(alice)
    responses += [client.get(reverse("parley:status")), client.get(room_url("no-such-room"))]
    client.force_login(admin_user)
    responses += [client.get(reverse("parley:status")), client.get("/admin/")]
    assert [r.status_code for r in responses] == [404, 302, 404, 404, 200, 200]
    for response in responses:
        directives = csp_of(response)
        assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
    foreign = client.get("/", headers={"host": "evil.example"})  # DisallowedHost: 400
    assert foreign.status_code == 400
    assert csp_of(foreign)["connect-src"] == "'self'"
