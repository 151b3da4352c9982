"""Registered models: their objects are indexed by the command, and again whenever they are
saved or deleted."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from parley import knowledge
from parley.knowledge.index import passages_search
from parley.models import KnowledgePassage, Message
from parley.rooms import services
from tests.knowledge.conftest import a_reader

pytestmark = pytest.mark.django_db

SOURCE = "parley.message"


def post(room, author, text: str) -> Message:
    message, _ = services.message_post(room=room, author=author, text=text)
    return message


def found(question: str) -> list[str]:
    return [p.title for p in passages_search(query=question, user=a_reader())]


def test_saving_a_registered_object_indexes_it_after_commit(
    register_messages, private_room, alice, django_capture_on_commit_callbacks
):
    register_messages()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = post(private_room, alice, "The ferry to the island leaves at nine.")
    assert not KnowledgePassage.objects.exists()  # nothing before the commit
    for callback in callbacks:
        callback()
    passage = KnowledgePassage.objects.get()
    assert (passage.source, passage.document) == (SOURCE, str(message.pk))
    assert passage.title == "Notes #1"
    assert passage.url == f"/rooms/{private_room.public_id}/#m1"
    assert found("When does the ferry leave?") == ["Notes #1"]


def test_editing_reindexes_and_deleting_removes(
    register_messages, private_room, alice, django_capture_on_commit_callbacks
):
    register_messages()
    with django_capture_on_commit_callbacks(execute=True):
        message = post(private_room, alice, "The ferry leaves at nine.")
    with django_capture_on_commit_callbacks(execute=True):
        message.text = "The train leaves at ten."
        message.save()
    assert found("When does the train leave?") == ["Notes #1"]
    assert found("ferry") == []
    with django_capture_on_commit_callbacks(execute=True):
        message.delete()
    assert not KnowledgePassage.objects.exists()
    assert found("train") == []


def test_a_rolled_back_save_is_not_indexed(
    register_messages, private_room, alice, django_capture_on_commit_callbacks
):
    register_messages()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        post(private_room, alice, "A secret plan.")
        raise RuntimeError("changed my mind")
    assert not KnowledgePassage.objects.exists()


def test_only_the_registrations_queryset_is_indexed(
    register_messages, private_room, alice, django_capture_on_commit_callbacks
):
    register_messages(queryset=Message.objects.exclude(text__startswith="draft:"))
    with django_capture_on_commit_callbacks(execute=True):
        message = post(private_room, alice, "draft: the ferry leaves at nine.")
    assert not KnowledgePassage.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        message.text = "The ferry leaves at nine."
        message.save()
    assert found("ferry") == ["Notes #1"]
    with django_capture_on_commit_callbacks(execute=True):
        message.text = "draft: no ferry today."
        message.save()
    assert found("ferry") == []


def test_the_command_indexes_registered_models_and_drops_unregistered_ones(
    register_messages, private_room, alice, reindex
):
    for text in ("The ferry leaves at nine.", "Bring a warm coat.", ""):
        Message.objects.create(room=private_room, seq=Message.objects.count() + 1, text=text)
    register_messages()
    assert KnowledgePassage.objects.count() == 0  # created before the registration
    out = reindex()
    # The empty message has no passage to store.
    assert f"{SOURCE}: 3 documents, 2 passages (2 new, 0 changed, 1 unchanged" in out
    assert found("warm coat") == ["Notes #2"]
    knowledge.unregister(Message)
    assert found("warm coat") == []  # nobody may read an unregistered model's passages
    assert f"{SOURCE}: no longer a source, 2 documents removed" in reindex()
    assert not KnowledgePassage.objects.exists()


def test_saves_of_unregistered_models_are_not_indexed(
    register_messages, private_room, alice, django_capture_on_commit_callbacks
):
    register_messages()
    knowledge.unregister(Message)
    with django_capture_on_commit_callbacks(execute=True):
        post(private_room, alice, "The ferry leaves at nine.")
    assert not KnowledgePassage.objects.exists()


@pytest.mark.parametrize(
    "options, error",
    [
        ({"fields": ["nope"]}, "has no field 'nope'"),
        ({"fields": "text"}, "fields must be a list"),
        ({"fields": ["text"], "permission": "view_message"}, "is not 'app_label.codename'"),
        ({"fields": ["text"], "owner": "writer"}, "has no field 'writer' \\(owner\\)"),
    ],
)
def test_register_refuses_what_it_cannot_use(options, error):
    with pytest.raises(ImproperlyConfigured, match=error):
        knowledge.register(Message, **options)
    assert knowledge.registrations() == []
