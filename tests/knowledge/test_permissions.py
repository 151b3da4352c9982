"""Read rights: a user never gets a passage from an object they may not view, even when it
is the best match; it takes no place among the results either."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from parley.knowledge.index import passages_search
from parley.models import Message
from parley.rooms import selectors, services

pytestmark = pytest.mark.django_db

QUESTION = "When does the ferry to the island leave?"


@pytest.fixture
def ferry(private_room, alice, reindex, knowledge_settings):
    """Alice's private note about the ferry (the best match for :data:`QUESTION`), and the
    knowledge folder's documents, which mention a ferry only in passing."""
    folder = Path(knowledge_settings.PARLEY["KNOWLEDGE"]["FOLDERS"][0])
    (folder / "travel.md").write_text("# Travel\n\nThe island has a ferry. Check the timetable.\n")
    message, _ = services.message_post(
        room=private_room, author=alice, text="The ferry to the island leaves at nine sharp."
    )
    return message


def titles(user, **options) -> list[str]:
    return [p.title for p in passages_search(query=QUESTION, user=user, **options)]


def test_a_model_permission_is_needed_to_read_its_objects(
    register_messages, ferry, reindex, alice, bob, django_user_model
):
    register_messages(permission="parley.view_message")
    reindex()
    assert titles(bob) == ["Travel"]  # the best match is left out, not the file
    assert titles(None) == []  # a visitor reads nothing while VISITORS["KNOWLEDGE"] is off
    bob.user_permissions.add(Permission.objects.get(codename="view_message"))
    bob = django_user_model.objects.get(pk=bob.pk)  # permissions are cached per instance
    assert titles(bob) == ["Notes #1", "Travel"]
    admin = django_user_model.objects.create_superuser("root", password="x")
    assert titles(admin)[0] == "Notes #1"


def test_a_callable_decides_object_by_object(register_messages, ferry, reindex, alice, bob):
    register_messages(
        permission=lambda user, message: selectors.room_is_member(room=message.room, user=user)
    )
    reindex()
    assert titles(alice) == ["Notes #1", "Travel"]
    assert titles(bob) == ["Travel"]


def test_a_forbidden_passage_takes_no_place(register_messages, ferry, reindex, alice, bob):
    register_messages(
        permission=lambda user, message: selectors.room_is_member(room=message.room, user=user)
    )
    reindex()
    assert titles(alice, limit=1) == ["Notes #1"]
    assert titles(bob, limit=1) == ["Travel"]
    found = passages_search(query=QUESTION, user=bob)
    assert all("nine sharp" not in p.text for p in found)


def test_an_object_deleted_since_indexing_is_read_by_nobody(
    register_messages, ferry, reindex, alice
):
    register_messages(permission=lambda user, message: True)
    reindex()
    Message.objects.filter(pk=ferry.pk).delete()  # no signal: the index still has it
    assert titles(alice) == ["Travel"]


def test_a_visitor_reads_nothing_unless_the_site_lets_visitors_read_its_knowledge(
    indexed, settings
):
    """Files were every logged-in user's to read; a visitor who is not logged in gets none
    of them, nor of any registration, until VISITORS["KNOWLEDGE"] says they are public."""
    question = "How do I connect Ollama?"
    assert passages_search(query=question, user=None) == []
    settings.PARLEY = {**settings.PARLEY, "VISITORS": {"KNOWLEDGE": True}}
    assert passages_search(query=question, user=None)[0].title.startswith("Assistant backends")
