"""Parley's pages: login, the room list, room creation, the room page and invitations."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db.models import F
from django.urls import reverse

from parley.models import Invitation, Membership, Message, Room
from parley.rooms import selectors, services

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


INVITED = (
    "If “\u2068{}\u2069” has an account here, they are invited: they join the room when "
    "they accept."
)


def invite_url(room: Room) -> str:
    return reverse("parley:invite", kwargs={"public_id": room.public_id})


def test_an_invitation_makes_no_member_until_accepted(client, alice, bob, make_user):
    room = services.room_create(owner=alice, title="Team", kind="shared")
    client.force_login(alice)
    response = client.post(invite_url(room), {"username": "bob"}, follow=True)
    assert response.redirect_chain[-1][0] == room_url(room.public_id)
    assert messages_of(response) == [INVITED.format("bob")]
    assert not selectors.room_is_member(room=room, user=bob)
    response = client.post(invite_url(room), {"username": ""}, follow=True)
    assert messages_of(response) == ["Type the username of the person to invite."]

    # Bob sees the invitation, not the room: its page and socket stay closed to him.
    client.force_login(bob)
    body = client.get(reverse("parley:rooms")).content.decode()
    (invitation,) = Invitation.objects.filter(invitee=bob)
    assert 'alice</bdi> invited you to <bdi class="invitation-room">Team</bdi>' in body
    assert "see its whole history" in body
    accept = reverse("parley:invitation-accept", kwargs={"invitation_id": invitation.pk})
    assert f'action="{accept}"' in body
    assert room_url(room.public_id) not in body
    assert client.get(room_url(room.public_id)).status_code == 404
    assert client.get(accept).status_code == 405  # a POST only: a link cannot accept

    response = client.post(accept)
    assert response.status_code == 302 and response["Location"] == room_url(room.public_id)
    membership = Membership.objects.get(room=room, user=bob)
    assert membership.invited_by == alice
    invitation.refresh_from_db()
    assert invitation.status == "accepted" and invitation.answered_at is not None
    assert client.get(room_url(room.public_id)).status_code == 200
    assert client.post(accept).status_code == 404  # answered already

    # The new member may invite in turn; an invitation is answered by its invitee only.
    carol = make_user("carol")
    client.post(invite_url(room), {"username": "carol"})
    invitation = Invitation.objects.get(invitee=carol)
    accept = reverse("parley:invitation-accept", kwargs={"invitation_id": invitation.pk})
    assert client.post(accept).status_code == 404  # bob cannot accept for carol
    assert not selectors.room_is_member(room=room, user=carol)


def test_a_declined_invitation_makes_no_member(client, alice, bob):
    room = services.room_create(owner=alice, title="Team", kind="shared")
    invitation = services.invitation_create(room=room, by=alice, username="bob")
    client.force_login(bob)
    decline = reverse("parley:invitation-decline", kwargs={"invitation_id": invitation.pk})
    response = client.post(decline, follow=True)
    assert response.redirect_chain[-1][0] == reverse("parley:rooms")
    assert messages_of(response) == [
        "You declined the invitation to “\u2068Team\u2069”: its members cannot invite you again."
    ]
    assert not selectors.room_is_member(room=room, user=bob)
    invitation.refresh_from_db()
    assert invitation.status == "declined"
    assert "invited you" not in response.content.decode()
    accept = reverse("parley:invitation-accept", kwargs={"invitation_id": invitation.pk})
    assert client.post(accept).status_code == 404


def test_the_invite_answer_does_not_tell_who_has_an_account(alice_client, alice, bob):
    """An existing name, a missing one, a member's and one's own get the same page: the
    answer is no oracle for usernames."""
    room = services.room_create(owner=alice, title="Team", kind="shared")
    answers = set()
    for username in ("bob", "nobody", "alice", "bob"):
        response = alice_client.post(invite_url(room), {"username": username}, follow=True)
        said = [m.replace(username, "…") for m in messages_of(response)]
        page = response.content.decode().replace(f"“\u2068{username}\u2069”", "“\u2068…\u2069”")
        page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", page)
        answers.add((response.status_code, tuple(response.redirect_chain), tuple(said), page))
    assert len(answers) == 1
    ((_, chain, said, _),) = answers
    assert chain == ((room_url(room.public_id), 302),) and said == (INVITED.format("…"),)
    assert Invitation.objects.filter(room=room).count() == 1  # bob's, once


def test_invitations_are_rate_limited_per_inviter_and_capped_per_invitee(
    client, settings, alice, bob, make_user
):
    settings.PARLEY = {"RATE_LIMITS": {"INVITES": [0.001, 3]}, "MAX_PENDING_INVITATIONS": 2}
    room = services.room_create(owner=alice, title="Team", kind="shared")
    client.force_login(alice)
    # Missing names count too: the limit must not tell them apart either.
    for username in ("nobody", "bob", "nobody-else"):
        response = client.post(invite_url(room), {"username": username}, follow=True)
        assert messages_of(response) == [INVITED.format(username)]
    response = client.post(invite_url(room), {"username": "carol"}, follow=True)
    assert messages_of(response) == [
        "You have sent many invitations in a short time. Try again in 17 minutes."
    ]
    assert Invitation.objects.count() == 1
    # Other inviters have their own allowance, but bob's pending invitations are capped.
    rooms = [
        services.room_create(owner=make_user(f"u{i}"), title="URGENT", kind="shared")
        for i in range(3)
    ]
    made = [services.invitation_create(room=r, by=r.owner, username="bob") for r in rooms]
    assert [m is not None for m in made] == [True, False, False]
    assert Invitation.objects.filter(invitee=bob, status="pending").count() == 2


def test_a_declined_invitation_cannot_be_sent_again(client, alice, bob, make_user):
    """Once bob declines, no member may invite him to that room again (a declined
    invitation was re-sendable at once, forever), and the inviter is told the same as
    always: the answer does not say that he declined."""
    room = services.room_create(owner=alice, title="URGENT: re-enter your password", kind="shared")
    carol = make_user("carol")
    services.room_member_add(room=room, user=carol, by=alice)
    invitation = services.invitation_create(room=room, by=alice, username="bob")
    services.invitation_answer(invitation_id=invitation.pk, user=bob, accept=False)
    for inviter in (alice, carol):
        client.force_login(inviter)
        response = client.post(invite_url(room), {"username": "bob"}, follow=True)
        assert messages_of(response) == [INVITED.format("bob")]
    assert list(Invitation.objects.values_list("status", flat=True)) == ["declined"]
    client.force_login(bob)
    assert "invited you" not in client.get(reverse("parley:rooms")).content.decode()
    # The "no" is to that room only.
    team = services.room_create(owner=alice, title="Team", kind="shared")
    assert services.invitation_create(room=team, by=alice, username="bob") is not None


def test_one_inviter_cannot_fill_an_invitees_pending_invitations(client, alice, bob, make_user):
    """At most MAX_PENDING_INVITATIONS_PER_INVITER (3) of bob's waiting invitations come
    from one inviter, so alice cannot take all MAX_PENDING_INVITATIONS (20) places and keep
    a colleague's invitation from arriving."""
    rooms = [
        services.room_create(owner=alice, title=f"URGENT {i}", kind="shared") for i in range(6)
    ]
    made = [services.invitation_create(room=r, by=alice, username="bob") for r in rooms]
    assert [m is not None for m in made] == [True, True, True, False, False, False]
    carol = make_user("carol")
    team = services.room_create(owner=carol, title="Team", kind="shared")
    assert services.invitation_create(room=team, by=carol, username="bob") is not None
    client.force_login(bob)
    assert 'invited you to <bdi class="invitation-room">Team</bdi>' in (
        client.get(reverse("parley:rooms")).content.decode()
    )
    # An answer frees a place for alice again (a decline blocks only its own room).
    services.invitation_answer(invitation_id=made[0].pk, user=bob, accept=False)
    assert services.invitation_create(room=rooms[3], by=alice, username="bob") is not None
    assert services.invitation_create(room=rooms[4], by=alice, username="bob") is None


def test_the_room_list_pages_by_50(alice_client, alice, bob):
    for i in range(120):
        services.room_create(owner=alice, title=f"room {i:03}", kind="private")
    first = alice_client.get(reverse("parley:rooms")).content.decode()
    assert first.count('class="room-card"') == 50
    assert "room 119" in first and "room 070" in first and "room 069" not in first
    assert 'href="?page=2"' in first and "Page 1 of 3" in first
    last = alice_client.get(reverse("parley:rooms") + "?page=3").content.decode()
    assert last.count('class="room-card"') == 20 and "room 000" in last
    odd = alice_client.get(reverse("parley:rooms") + "?page=x")
    assert odd.status_code == 200 and "Page 1 of 3" in odd.content.decode()


def test_room_creation_is_rate_limited_per_user(client, settings, alice, bob):
    settings.PARLEY = {"RATE_LIMITS": {"ROOMS": [0.01, 2]}}
    client.force_login(alice)
    for title in ("one", "two"):
        assert (
            client.post(reverse("parley:rooms"), {"title": title, "kind": "private"}).status_code
            == 302
        )
    response = client.post(reverse("parley:rooms"), {"title": "three", "kind": "private"})
    assert response.status_code == 429
    assert "You have created many rooms in a short time. Try again in 2 minutes." in (
        response.content.decode()
    )
    assert list(Room.objects.filter(owner=alice).values_list("title", flat=True)) == ["two", "one"]
    client.force_login(bob)  # per user
    assert (
        client.post(reverse("parley:rooms"), {"title": "bob's", "kind": "private"}).status_code
        == 302
    )


def test_invite_into_private_room_is_refused(alice_client, bob, private_room):
    url = reverse("parley:invite", kwargs={"public_id": private_room.public_id})
    response = alice_client.post(url, {"username": "bob"}, follow=True)
    assert messages_of(response) == [
        "Private rooms have one member; create a shared room to invite."
    ]
    assert not selectors.room_is_member(room=private_room, user=bob)


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
    services.room_member_add(room=room, user=mallory, by=alice)
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


def test_parleys_own_pages_carry_the_csp_without_the_middleware(client, settings, admin_user):
    """A host project that does not install the middleware: Parley's pages, the staff
    status JSON (an async view) included, still send the policy."""
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "parley.middleware.ContentSecurityPolicyMiddleware"
    ]
    client.force_login(admin_user)
    responses = [client.get(reverse("parley:status")), client.get(reverse("parley:rooms"))]
    assert [r.status_code for r in responses] == [200, 200]
    for response in responses:
        assert csp_of(response)["default-src"] == "'self'"


# Login throttling (django-axes in the example project): the login page and the admin's.


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_after_five_wrong_passwords_even_the_right_one_is_refused_until_the_cool_off(
    client, example_login_settings, admin_user, url
):
    settings = example_login_settings
    from axes.models import AccessAttempt

    assert settings.AXES_FAILURE_LIMIT == 5
    right = {"username": "admin", "password": "password"}  # pytest-django's admin_user
    wrong = {**right, "password": "guess"}
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post(url, wrong).status_code == 200  # the form again, with its error
    assert client.post(url, wrong).status_code == 429  # the fifth: locked out
    locked = client.post(url, right)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    assert "Content-Security-Policy" in locked
    # The lock is on this username from this address: the same user elsewhere logs in.
    assert client.post(url, right, REMOTE_ADDR="192.0.2.7").status_code == 302
    client.logout()
    assert client.post(url, right).status_code == 429
    # Once the cool-off has passed since the last attempt, the right password works again.
    cool_off = settings.AXES_COOLOFF_TIME
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - cool_off - timedelta(seconds=1))
    response = client.post(url, right)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(admin_user.pk)


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_the_lockout_is_a_page_of_the_site_that_names_the_wait(
    client, example_login_settings, admin_user, url
):
    settings = example_login_settings
    """django-axes answered a locked-out login with a bare line of plain text; the example
    project renders example/templates/lockout.html in the site's layout, still with 429."""
    settings.AXES_COOLOFF_TIME = timedelta(minutes=30)
    wrong = {"username": "admin", "password": "guess"}
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(url, wrong)
    response = client.post(url, wrong)
    assert response.status_code == 429
    # Rendered last, after the login form axes replaced.
    assert [t.name for t in response.templates][-2:] == ["lockout.html", "parley/base.html"]
    page = response.content.decode()
    assert '<header class="topbar">' in page and "<title>Too many attempts · Parley</title>" in page
    assert "Too many wrong passwords were tried for this account from your address" in page
    assert "You can try again 30 minutes after the last attempt." in page
    assert "<code>manage.py axes_reset</code>" in page
    assert "Content-Security-Policy" in response


def test_room_titles_lose_bidi_controls_and_invisible_spaces(alice_client):
    title = "\u202eURGENT\u200b: \u2066re-enter\u2069 your password 👩\u200d💻"
    alice_client.post(reverse("parley:rooms"), {"title": title, "kind": "shared"})
    # Joiners stay: emoji sequences and some scripts need them.
    assert Room.objects.get().title == "URGENT: re-enter your password 👩\u200d💻"


def test_a_host_overriding_parley_base_gets_parleys_pages_in_its_own_layout(
    alice_client, private_room, settings
):
    """docs/embedding.md's override: the room page inside the host's layout, its content in
    the .parley element that scopes parley.css, its script where the host puts scripts."""
    host = settings.BASE_DIR / "tests" / "host_site" / "templates"
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [host, *settings.TEMPLATES[0]["DIRS"]]}]
    page = alice_client.get(room_url(private_room.public_id)).content.decode()

    assert '<header id="host-header">' in page
    main = page[page.index('<main id="host-main">') : page.index("</main>")]
    assert '<div class="parley page page-room">' in main
    assert f'data-room-id="{private_room.public_id}"' in main
    assert "parley/parley.css" in page and "parley/chat.js" in page
    assert f"<title>{private_room.title} · Parley</title>" in page


# Managing a room ---------------------------------------------------------------------------


def room_action(action: str, room, **kwargs: int) -> str:
    return reverse(f"parley:{action}", kwargs={"public_id": room.public_id, **kwargs})


def test_the_owner_renames_the_room_and_members_cannot(alice_client, client, bob, shared_room):
    response = alice_client.post(
        room_action("rename", shared_room), {"title": " Launch "}, follow=True
    )
    assert messages_of(response) == ["The room is now called “\u2068Launch\u2069”."]
    shared_room.refresh_from_db()
    assert shared_room.title == "Launch"
    empty = alice_client.post(room_action("rename", shared_room), {"title": "\u200b "}, follow=True)
    assert messages_of(empty) == ["Give the room a title."]
    client.force_login(bob)
    page = client.get(room_url(shared_room.public_id)).content.decode()
    assert "Rename" not in page and "Delete room" not in page  # only the owner's page has them
    refused = client.post(room_action("rename", shared_room), {"title": "Bob's"}, follow=True)
    assert messages_of(refused) == ["Only the room's owner may rename it."]
    shared_room.refresh_from_db()
    assert shared_room.title == "Launch"


def test_deleting_a_room_asks_first_saying_what_goes_then_deletes_its_messages(
    alice_client, shared_room
):
    services.message_post(room=shared_room, author=shared_room.owner, text="one", client_id="a")
    services.message_post(room=shared_room, author=shared_room.owner, text="two", client_id="b")
    page = alice_client.get(room_action("delete", shared_room))
    text = " ".join(page.content.decode().split())
    assert "Its 2 messages will be deleted for all 2 members" in text
    assert "This cannot be undone." in text
    assert Room.objects.filter(pk=shared_room.pk).exists()  # asking deletes nothing
    response = alice_client.post(room_action("delete", shared_room), follow=True)
    assert messages_of(response) == ["“\u2068Team\u2069” and its 2 messages were deleted."]
    assert not Room.objects.filter(pk=shared_room.pk).exists()
    assert not Message.objects.filter(room_id=shared_room.pk).exists()


def test_only_the_owner_deletes_and_strangers_learn_nothing(client, bob, make_user, shared_room):
    client.force_login(bob)
    response = client.post(room_action("delete", shared_room), follow=True)
    assert messages_of(response) == ["Only the room's owner may delete it."]
    client.force_login(make_user("mallory"))
    for action in ("delete", "rename"):
        assert client.post(room_action(action, shared_room)).status_code == 404
    assert Room.objects.filter(pk=shared_room.pk).exists()


def test_the_owner_removes_a_member_who_can_be_invited_again(
    alice_client, client, bob, shared_room
):
    remove = room_action("remove-member", shared_room, user_id=bob.pk)
    assert (
        f'action="{remove}"' in alice_client.get(room_url(shared_room.public_id)).content.decode()
    )
    response = alice_client.post(remove, follow=True)
    assert messages_of(response) == [
        "“\u2068bob\u2069” is no longer a member; they can be invited again."
    ]
    assert not selectors.room_is_member(room=shared_room, user=bob)
    assert services.invitation_create(room=shared_room, by=shared_room.owner, username="bob")
    client.force_login(bob)
    assert client.get(room_url(shared_room.public_id)).status_code == 404


def test_a_member_cannot_remove_another_nor_the_owner_be_removed(
    alice_client, client, alice, bob, make_user, shared_room
):
    carol = make_user("carol")
    services.room_member_add(room=shared_room, user=carol, by=alice)
    client.force_login(bob)
    response = client.post(room_action("remove-member", shared_room, user_id=carol.pk), follow=True)
    assert messages_of(response) == ["Only the room's owner may remove its members."]
    owner = alice_client.post(
        room_action("remove-member", shared_room, user_id=alice.pk), follow=True
    )
    assert messages_of(owner) == ["The owner of a room cannot leave it."]
    assert client.post(room_action("remove-member", shared_room, user_id=99999)).status_code == 404
    assert selectors.room_is_member(room=shared_room, user=carol)
