"""Who may read what, applied before ranking: a passage's owner and permission are stored
with it; a shared room's answer holds only what every member may read and says when
something was withheld; the cost of a search does not depend on what the user may not read."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from parley.answers import records
from parley.backends.base import AssistantRequest, Turn
from parley.backends.offline import compose_answer
from parley.backends.prompt import WITHHELD_NOTE, build_messages
from parley.knowledge.index import WINDOW, knowledge_search, passages_search
from parley.knowledge.store import version_bump
from parley.models import KnowledgePassage, Message
from parley.rooms import selectors, services

pytestmark = pytest.mark.django_db

QUESTION = "When does the ferry to the island leave?"
SECRET = "The ferry to the island leaves at nine sharp from pier seven."


def titles(user, **options) -> list[str]:
    return [p.title for p in passages_search(query=QUESTION, user=user, **options)]


@pytest.fixture
def vault(alice, reindex, knowledge_settings, register_messages, django_user_model):
    """Alice's notes, registered with ``owner="author"``; one holds :data:`SECRET`."""
    register_messages(owner="author")
    room = services.room_create(owner=alice, title="Vault")
    message, _ = services.message_post(room=room, author=alice, text=SECRET)
    reindex()
    return message


def test_the_owner_and_permission_are_stored_with_each_passage(
    vault, alice, reindex, register_messages
):
    passage = KnowledgePassage.objects.get(source="parley.message")
    assert (passage.owner, passage.permission) == (str(alice.pk), "")
    register_messages(owner="author", permission="parley.view_message")
    KnowledgePassage.objects.update(owner="", permission="")  # as 0003 leaves old rows
    assert "1 changed" in reindex()  # the command fills the new columns
    passage = KnowledgePassage.objects.get(source="parley.message")
    assert (passage.owner, passage.permission) == (str(alice.pk), "parley.view_message")


def test_only_the_owner_reads_an_owned_object(vault, alice, bob, django_user_model):
    assert titles(alice)[0] == "Vault #1"
    assert "Vault #1" not in titles(bob)
    assert "Vault #1" not in titles(None)
    root = django_user_model.objects.create_superuser("root", password="x")
    assert "Vault #1" not in titles(root)  # an owner is one user, whatever the flags


def test_an_object_without_its_owner_is_read_by_nobody(vault, alice, reindex):
    Message.objects.filter(pk=vault.pk).update(author=None)
    reindex()
    assert KnowledgePassage.objects.get(source="parley.message").owner == ""
    assert "Vault #1" not in titles(alice)


def test_a_stored_permission_applies_even_if_the_registration_no_longer_asks_for_it(
    vault, alice, register_messages, django_user_model
):
    KnowledgePassage.objects.filter(source="parley.message").update(
        permission="parley.view_message"
    )
    version_bump()
    assert "Vault #1" not in titles(alice)
    alice.user_permissions.add(Permission.objects.get(codename="view_message"))
    alice = django_user_model.objects.get(pk=alice.pk)
    assert titles(alice)[0] == "Vault #1"


def test_a_shared_room_gets_only_what_every_member_may_read_and_is_told(
    vault, alice, bob, shared_room, private_room
):
    mine = knowledge_search(query=QUESTION, user=alice)
    assert mine.passages[0].title == "Vault #1" and not mine.withheld
    ours = knowledge_search(query=QUESTION, user=alice, audience=[alice, bob])
    assert all(SECRET not in p.text and p.title != "Vault #1" for p in ours.passages)
    assert ours.withheld

    # Through the service: the room's members are the audience.
    for room, withheld in ((shared_room, True), (private_room, False)):
        question, _ = services.message_post(room=room, author=alice, text=QUESTION)
        answer, _ = records.answer_open(room=room, reply_to=question, worker="w")
        request = records.answer_request(answer=answer)
        assert request.withheld is withheld
        assert any(SECRET in p.text for p in request.passages) is not withheld
        records.answer_finish(answer=answer, text="", status=Message.Status.COMPLETE)


def test_nothing_is_withheld_when_every_member_may_read_it(
    register_messages, alice, bob, reindex, knowledge_settings
):
    register_messages()  # no owner: everyone may read
    room = services.room_create(owner=alice, title="Open")
    services.message_post(room=room, author=alice, text=SECRET)
    reindex()
    found = knowledge_search(query=QUESTION, user=alice, audience=[bob])
    assert found.passages[0].title == "Open #1" and not found.withheld


def test_a_callable_is_asked_for_every_member(
    register_messages, alice, bob, private_room, reindex, knowledge_settings
):
    register_messages(
        permission=lambda user, message: selectors.room_is_member(room=message.room, user=user)
    )
    services.message_post(room=private_room, author=alice, text=SECRET)
    reindex()
    assert knowledge_search(query=QUESTION, user=alice).passages[0].title == "Notes #1"
    shared = knowledge_search(query=QUESTION, user=alice, audience=[bob])
    assert shared.withheld and all(p.title != "Notes #1" for p in shared.passages)


def test_the_answers_say_so_without_naming_what_was_withheld():
    request = AssistantRequest(turns=[Turn("user", QUESTION, "alice")], withheld=True)
    answer = compose_answer(request)
    assert answer.endswith(f"_{WITHHELD_NOTE}_\n")
    [system, _] = build_messages(request, system_prompt="Be brief.")
    assert "withheld" in system["content"]
    assert WITHHELD_NOTE not in compose_answer(AssistantRequest(turns=request.turns))


@pytest.fixture
def travel(knowledge_settings):
    """A document everyone may read that answers :data:`QUESTION` less well than Alice's
    notes do."""
    folder = Path(knowledge_settings.PARLEY["KNOWLEDGE"]["FOLDERS"][0])
    (folder / "travel.md").write_text("# Travel\n\nThe island has a ferry. Check the timetable.\n")


def hide(alice, bob, count: int, room_title: str = "Vault") -> None:
    """``count`` of Alice's notes that match :data:`QUESTION` better than anything Bob may
    read; indexed through the save signal."""
    room = services.room_create(owner=alice, title=room_title)
    for n in range(count):
        services.message_post(room=room, author=alice, text=f"{SECRET} Boat {n}.")


def search_queries(user) -> tuple[int, list[str]]:
    """How many queries a search for :data:`QUESTION` by ``user`` makes (the index already
    built), and what it found."""
    passages_search(query="warm up", user=user)  # builds the index
    with CaptureQueriesContext(connection) as queries:
        found = titles(user)
    return len(queries), found


@pytest.mark.django_db(transaction=True)
def test_hidden_documents_are_never_checked_one_by_one(
    register_messages, alice, bob, travel, reindex, django_user_model
):
    """With an owner rule, a search makes the same queries whatever Alice's hidden notes
    match; without them none of them is a candidate at all."""
    register_messages(owner="author")
    reindex()
    bob = django_user_model.objects.get(pk=bob.pk)
    none_hidden, found_before = search_queries(bob)
    hide(alice, bob, 60)
    bob = django_user_model.objects.get(pk=bob.pk)  # permission caches start empty again
    many_hidden, found_after = search_queries(bob)
    assert many_hidden == none_hidden
    assert found_after == found_before == ["Travel"]  # nothing of them, not even a place


@pytest.mark.django_db(transaction=True)
def test_a_callable_is_asked_for_a_bounded_window_in_one_query(
    register_messages, alice, bob, travel, reindex
):
    """A callable rule cannot be computed ahead: its objects are loaded in one query for
    the first :data:`WINDOW` candidates, however many hidden objects match."""
    asked = []

    def author(user, message):
        asked.append(message.pk)
        return message.author_id == user.pk

    register_messages(permission=author)
    hide(alice, bob, 3)
    reindex()
    few, _ = search_queries(bob)
    asked.clear()
    hide(alice, bob, 60, room_title="Vault 2")
    many, found = search_queries(bob)
    assert len(asked) == WINDOW  # not one per matching object
    assert many == few
    # The limit (docs/knowledge.md): forbidden objects filling the window leave no place
    # for what Bob may read further down; nothing of them is returned.
    assert found == []


def test_the_askers_own_passages_never_take_the_rooms_places(
    register_messages, alice, bob, travel, reindex
):
    """Alice owns more notes matching the question than the window a search looks at, each
    better than the public document: the room is still given the public document, ranked
    among what every member may read, and told that something was withheld."""
    register_messages(owner="author")
    hide(alice, bob, 20)
    reindex()
    mine = knowledge_search(query=QUESTION, user=alice)
    assert WINDOW < 20 and mine.passages
    assert all(p.title.startswith("Vault #") for p in mine.passages)
    ours = knowledge_search(query=QUESTION, user=alice, audience=[bob])
    assert [p.title for p in ours.passages] == ["Travel"] and ours.withheld
    # Bob asking in the same room: nothing he alone may read is missing, so no note.
    theirs = knowledge_search(query=QUESTION, user=bob, audience=[alice])
    assert [p.title for p in theirs.passages] == ["Travel"] and not theirs.withheld


def test_withheld_only_when_a_hidden_passage_would_have_made_the_cut(
    register_messages, alice, bob, travel, reindex
):
    """Alice's one note matches less well than the public document: left out of her own
    first passage, it withholds nothing; among her first two, it does."""
    register_messages(owner="author")
    room = services.room_create(owner=alice, title="Vault")
    services.message_post(room=room, author=alice, text="A ferry.")
    reindex()
    options = {"query": QUESTION, "user": alice, "min_score": 0.25}
    assert [p.title for p in knowledge_search(**options, limit=2).passages] == [
        "Travel",
        "Vault #1",
    ]
    first = knowledge_search(**options, audience=[bob], limit=1)
    assert [p.title for p in first.passages] == ["Travel"] and not first.withheld
    two = knowledge_search(**options, audience=[bob], limit=2)
    assert [p.title for p in two.passages] == ["Travel"] and two.withheld


@pytest.mark.django_db(transaction=True)
def test_a_callable_is_asked_for_a_bounded_window_for_every_member(
    register_messages, alice, bob, travel, reindex
):
    """In a shared room the callable is asked of at most :data:`WINDOW` candidates of each
    ranking (the asker's and the room's), for each member, in one query per source: the
    same calls and queries for 60 or 120 matching objects Bob may not read."""
    asked = []

    def author(user, message):
        asked.append((user.pk, message.pk))
        return message.author_id == user.pk

    register_messages(permission=author)
    costs = []
    for count in (60, 60):
        hide(alice, bob, count, room_title=f"Vault {len(costs)}")
        reindex()
        knowledge_search(query="warm up", user=alice)  # builds the index
        asked.clear()
        with CaptureQueriesContext(connection) as queries:
            found = knowledge_search(query=QUESTION, user=alice, audience=[bob])
        costs.append((len(queries), len(asked)))
        assert found.withheld and not found.passages  # the limit: the window is full of them
    # Both rankings hold the same 16 here: each member is asked about each of them once.
    assert costs[0] == costs[1] and costs[0][1] == 2 * WINDOW
