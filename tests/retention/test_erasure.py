"""Deleting a user (``user.delete()``, a queryset's ``delete()``, the admin's action): their
private rooms go, their shared rooms pass to the next member, their messages elsewhere are
anonymised or deleted (``ERASURE["MESSAGES"]``), and their sockets close."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient

from parley.models import (
    Invitation,
    Membership,
    Message,
    Room,
    ToolGrant,
    ToolRun,
    Usage,
    Visitor,
)
from parley.rooms import services
from parley.visitors.services import visitor_carry_over
from tests.retention.conftest import exchanges, later_version, seqs
from tests.test_browser import FAST, backend_env, log_in, open_room


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def erasure(settings):
    def configure(mode: str) -> None:
        settings.PARLEY = {**getattr(settings, "PARLEY", {}), "ERASURE": {"MESSAGES": mode}}

    return configure


def delete_by_admin(client, user) -> None:
    page = client.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": [user.pk], "post": "yes"},
    )
    assert page.status_code == 302


DELETIONS = {
    "instance": lambda user, _: user.delete(),
    "queryset": lambda user, _: get_user_model().objects.filter(pk=user.pk).delete(),
    "admin": lambda user, client: delete_by_admin(client, user),
}


@pytest.mark.django_db
@pytest.mark.parametrize("how", sorted(DELETIONS))
def test_a_deleted_owners_rooms(how, admin_client, alice, bob, carol):
    """Private rooms go; a shared room passes to the member who joined first after them;
    one with nobody else left goes."""
    private = services.room_create(owner=alice, title="Notes", kind="private")
    team = services.room_create(owner=alice, title="Team", kind="shared")
    services.room_member_add(room=team, user=carol, by=alice)
    services.room_member_add(room=team, user=bob, by=alice)
    alone = services.room_create(owner=alice, title="Alone", kind="shared")
    exchanges(team, 2, author=carol)
    exchanges(private, 1, author=alice)
    DELETIONS[how](alice, admin_client)
    assert not Room.objects.filter(pk__in=[private.pk, alone.pk]).exists()
    team.refresh_from_db()
    assert team.owner == carol  # the longest-standing member after alice
    assert seqs(team) == [1, 2, 3, 4]
    assert set(Membership.objects.filter(room=team).values_list("user__username", flat=True)) == {
        "bob",
        "carol",
    }


@pytest.mark.django_db
def test_two_owners_deleted_at_once_do_not_inherit_from_each_other(alice, bob, carol):
    team = services.room_create(owner=alice, title="Team", kind="shared")
    services.room_member_add(room=team, user=bob, by=alice)
    services.room_member_add(room=team, user=carol, by=alice)
    get_user_model().objects.filter(username__in=["alice", "bob"]).delete()
    team.refresh_from_db()
    assert team.owner == carol


@pytest.mark.django_db
@pytest.mark.parametrize("how", sorted(DELETIONS))
def test_anonymised_messages_stay_without_author_or_client_id(
    how, admin_client, shared_room, alice, bob, carol
):
    services.room_member_add(room=shared_room, user=carol, by=alice)
    # Bob and carol used the same client id: once both are anonymised, neither may keep it
    # (it is unique per room among messages without an author, a visitor's).
    mine, _ = services.message_post(room=shared_room, author=bob, text="bob's", client_id="c1")
    theirs, _ = services.message_post(room=shared_room, author=carol, text="hi", client_id="c1")
    DELETIONS[how](bob, admin_client)
    get_user_model().objects.filter(pk=carol.pk).delete()
    kept = Message.objects.filter(pk__in=[mine.pk, theirs.pk])
    assert list(kept.values_list("text", "author", "client_id")) == [
        ("bob's", None, ""),
        ("hi", None, ""),
    ]


@pytest.mark.django_db
def test_deleted_messages_take_the_answers_to_them(erasure, shared_room, alice, bob):
    erasure("delete")
    [(question, answer)] = exchanges(shared_room, 1, author=bob)
    again = later_version(shared_room, answer)
    ToolRun.objects.create(answer=answer, room=shared_room, asker=bob, call_id="c", tool="t",
                           round=1, position=0)  # fmt: skip
    exchanges(shared_room, 1, author=alice)
    bob.delete()
    assert seqs(shared_room) == [4, 5]  # alice's exchange alone
    assert not Message.objects.filter(pk__in=[question.pk, answer.pk, again.pk]).exists()
    assert not ToolRun.objects.exists()


@pytest.mark.django_db
def test_an_unknown_erasure_mode_stops_the_deletion(erasure, shared_room, bob):
    erasure("forget")
    services.message_post(room=shared_room, author=bob, text="hi")
    with pytest.raises(ImproperlyConfigured, match="ERASURE"):
        bob.delete()
    assert get_user_model().objects.filter(pk=bob.pk).exists()


@pytest.mark.django_db
def test_their_invitations_grants_and_carried_over_visitors_go(shared_room, alice, bob, carol):
    invitation = services.invitation_create(room=shared_room, by=bob, username="carol")
    ToolGrant.objects.create(user=bob, tool="pin")
    visitor = Visitor.objects.create()
    conversation = Room.objects.create(visitor=visitor, title="Conversation")
    visitor_carry_over(visitor=visitor, user=bob)
    run = ToolRun.objects.create(answer=exchanges(shared_room, 1, author=alice)[0][1],
                                 room=shared_room, asker=bob, decided_by=bob, call_id="c",
                                 tool="t", round=1, position=0)  # fmt: skip
    bob.delete()
    assert Invitation.objects.get(pk=invitation.pk).invited_by is None  # carol's, still open
    assert not ToolGrant.objects.exists()
    # Set free, it would be found again by the token its embed kept.
    assert not Visitor.objects.filter(pk=visitor.pk).exists()
    assert not Room.objects.filter(pk=conversation.pk).exists()  # a private room of bob's
    run.refresh_from_db()
    assert (run.asker, run.decided_by) == (None, None)


@pytest.mark.django_db(transaction=True)
async def test_the_export_and_the_room_say_deleted_user_not_visitor(shared_room, alice, bob):
    await database_sync_to_async(services.message_post)(room=shared_room, author=bob, text="hi")
    await database_sync_to_async(bob.delete)()
    client = AsyncClient()
    await client.aforce_login(alice)
    for fmt in ("md", "json"):
        response = await client.get(f"/rooms/{shared_room.public_id}/export.{fmt}")
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
        if fmt == "md":
            assert "## Deleted user · " in body and "Visitor" not in body
        else:
            assert json.loads(body)["messages"][0]["author"] is None


@pytest.mark.django_db(transaction=True)
async def test_a_deleted_users_sockets_close(connect, backend, shared_room, alice, bob):
    theirs = await connect(shared_room, bob)
    await theirs.expect("hello")
    others = await connect(shared_room, alice)
    await others.expect("hello")
    await database_sync_to_async(bob.delete)()
    assert (await theirs.expect("error"))["code"] == "unauthenticated"
    assert await theirs.closed() == 4401
    await others.send(type="send", client_id="still", text="still here")
    assert (await others.expect("ack"))["client_id"] == "still"


@pytest.mark.django_db(transaction=True)
async def test_a_deleted_owners_private_room_closes_its_sockets(
    connect, backend, private_room, alice
):
    socket = await connect(private_room, alice)
    await socket.expect("hello")
    await database_sync_to_async(alice.delete)()
    error = await socket.expect("error")
    assert error["code"] in ("unauthenticated", "room_deleted")
    assert await socket.closed() in (4401, 4404)


@pytest.mark.django_db(transaction=True)
async def test_an_answer_being_written_to_a_deleted_question_stops(
    connect, backend, erasure, shared_room, alice, bob
):
    backend(reply="word ", repeat=500, delay=0.01)
    erasure("delete")
    asker = await connect(shared_room, bob)
    await asker.expect("hello")
    other = await connect(shared_room, alice)
    await other.expect("hello")
    await asker.send(type="send", client_id="q", text="talk a lot")
    await other.expect("delta")
    await database_sync_to_async(bob.delete)()
    done = await other.expect("done")
    assert done["message"]["status"] == "cancelled"
    assert not await database_sync_to_async(Message.objects.filter(room=shared_room).exists)()
    # Its usage is kept, estimated, without the answer and the asker that are gone.
    usage = await Usage.objects.aget()
    assert (usage.answer_id, usage.user_id, usage.room_id) == (None, None, shared_room.pk)
    assert usage.estimated and usage.completion_tokens > 0


@pytest.mark.browser
@pytest.mark.server
def test_the_room_page_shows_a_deleted_users_messages_as_theirs(
    servers, new_tab, shared_room, alice, bob
):
    from playwright.sync_api import expect

    services.message_post(room=shared_room, author=bob, text="from bob")
    bob.delete()
    server = servers(env=backend_env(FAST), name="browser-erasure")
    tab = new_tab()
    log_in(tab, server, "alice")
    open_room(tab, shared_room)
    message = tab.page.locator("#messages > li")
    expect(message).to_have_count(1)
    expect(message.locator(".msg-author")).to_have_text("Deleted user")
    expect(message.locator(".msg-body")).to_have_text("from bob")
    assert tab.errors == []


@pytest.mark.django_db
def test_the_admins_confirmation_lists_the_rooms_that_go_not_those_that_pass_on(
    admin_client, alice, bob
):
    services.room_create(owner=alice, title="Alice's notes", kind="private")
    team = services.room_create(owner=alice, title="Team room", kind="shared")
    services.room_member_add(room=team, user=bob, by=alice)
    page = admin_client.get(f"/admin/auth/user/{alice.pk}/delete/").content.decode()
    assert ">Alice&#x27;s notes</a>" in page and ">Team room</a>" not in page
    assert ">alice in Team room</a>" in page  # her membership goes
    assert Room.objects.count() == 2  # only asked
