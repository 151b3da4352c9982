"""Searching the index: ranking, the bar a passage must clear, the places it fills, and every
server process searching the same passages."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser

from parley.backends.base import AssistantRequest, Turn
from parley.backends.offline import compose_answer, reply_kind
from parley.knowledge import index as knowledge_index
from parley.knowledge.index import index_current, knowledge_about, passages_search
from parley.knowledge.sources import Document
from parley.knowledge.store import document_store, version_bump
from parley.knowledge.text import text_terms
from parley.models import KnowledgePassage
from tests.knowledge.conftest import a_reader
from tests.servers import Peer

pytestmark = pytest.mark.django_db


def titles(question: str, **options) -> list[str]:
    return [p.title for p in passages_search(query=question, user=a_reader(), **options)]


@pytest.mark.parametrize(
    "question, best",
    [
        ("How do I connect Ollama?", "Assistant backends › OpenAI-compatible servers"),
        ("nginx WebSocket headers", "Deploying › Behind nginx"),
        ("Which database for production?", "Deploying › Database"),
        ("How often should I descale the coffee machine?", "Notes"),
        ("What does PARLEY_BACKEND do?", "Assistant backends › OpenAI-compatible servers"),
        ("does the offline backend need a model", "Assistant backends › The offline backend"),
    ],
)
def test_the_passage_that_answers_comes_first(indexed, question, best):
    assert titles(question)[0] == best


def test_passages_carry_their_text_link_document_and_a_descending_score(indexed):
    found = passages_search(query="backend model server", user=a_reader())
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)
    top = found[0]
    assert top.document.startswith("files:kb/")
    assert top.url.startswith("/knowledge/kb/")
    assert top.text


def test_nothing_is_found_for_a_question_the_documents_do_not_cover(indexed):
    assert titles("What is the capital of Australia?") == []
    assert titles("How do I bake sourdough bread?") == []
    assert titles("") == []


def test_most_of_the_question_must_match(indexed):
    # "backend" is in the documents; "kubernetes", "helm" and "chart" are nowhere.
    assert titles("backend kubernetes helm chart") == []
    assert titles("backend kubernetes helm chart", min_score=0.2)
    assert titles("offline backend")


def test_at_most_top_k_passages(indexed, settings):
    question = "backend server model database"  # each passage holds one word or two
    assert len(titles(question, min_score=0)) == 4  # TOP_K's default
    settings.PARLEY = {**settings.PARLEY, "KNOWLEDGE": {**settings.PARLEY["KNOWLEDGE"], "TOP_K": 2}}
    assert len(titles(question, min_score=0)) == 2
    assert len(titles(question, min_score=0, limit=1)) == 1


def test_terms_are_stemmed_and_identifiers_found_whole_and_in_parts():
    assert text_terms("Connecting the servers") == text_terms("connect a server")
    assert text_terms("How do I set PARLEY_BACKEND?") == [
        "set",
        "parley",
        "backend",
        "parley_backend",
    ]
    assert {"echobackend", "echo", "backend"} <= set(text_terms("class EchoBackend"))


def test_the_index_is_rebuilt_only_when_the_stored_passages_change(indexed):
    first = index_current()
    assert index_current() is first
    document_store(
        document=Document(source="files", key="kb/new.md", title="New", url="", sections=[])
    )
    assert index_current() is first  # a document without passages changes nothing

    # Another process writes passages and bumps the version: this one notices.
    KnowledgePassage.objects.create(
        source="files", document="kb/tea.md", position=0, title="Tea", text="Brew green tea."
    )
    version_bump()
    assert titles("green tea") == ["Tea"]
    assert index_current() is not first


def test_a_rebuild_reuses_the_terms_of_passages_it_already_had(indexed, monkeypatch):
    index_current()
    calls = []
    real = knowledge_index.text_terms
    monkeypatch.setattr(
        knowledge_index, "text_terms", lambda text: calls.append(text) or real(text)
    )
    KnowledgePassage.objects.create(
        source="files", document="kb/tea.md", position=0, title="Tea", text="Brew green tea."
    )
    version_bump()
    assert titles("green tea") == ["Tea"]
    assert len([text for text in calls if "Brew" in text]) == 1
    assert len(calls) == 2  # the new passage, and the question


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
async def test_a_server_process_answers_from_the_index_and_follows_changes_made_elsewhere(
    servers, alice, private_room, knowledge_folder, knowledge_settings, reindex
):
    await sync_to_async(reindex)()
    offline = {"BACKEND": "parley.backends.offline.OfflineBackend", "OPTIONS": {"delay": 0}}
    server = servers({"PARLEY_TEST_BACKEND": json.dumps(offline)})
    peer = await Peer.connect(server, private_room, alice)

    async def ask(text: str) -> str:
        await peer.send(type="send", text=text)
        return (await peer.expect(lambda f: f["type"] == "done"))["message"]["text"]

    question = "How often should I descale the coffee machine?"
    assert "every month with citric acid" in await ask(question)
    # This process changes the index; the server notices at its next search.
    (knowledge_folder / "notes.txt").write_text(
        "Descale the coffee machine weekly, with vinegar.\n"
    )
    await sync_to_async(reindex)()
    answer = await ask(question)
    assert "weekly, with vinegar" in answer and "citric acid" not in answer
    assert "- \\[1\\] [Notes](/knowledge/kb/notes.txt)" in answer
    await peer.close()


def test_the_site_introduction_is_the_document_named_about(settings, knowledge_settings, reindex):
    """What the offline assistant says it is: the start of KNOWLEDGE["ABOUT"], with the
    titles of the other documents it answers from."""
    reader = a_reader()
    assert knowledge_about(user=reader) is None  # none named
    knowledge = {**settings.PARLEY["KNOWLEDGE"], "ABOUT": "kb/backends.md"}
    settings.PARLEY = {**settings.PARLEY, "KNOWLEDGE": knowledge}
    reindex()
    about = knowledge_about(user=reader)
    assert about is not None and about.title == "Assistant backends"
    assert about.documents == ["Deploying", "Notes"]
    # A visitor reads no file unless visitors may (VISITORS["KNOWLEDGE"]): not this either.
    assert knowledge_about(user=None) is None
    assert knowledge_about(user=reader, audience=[AnonymousUser()]) is None
    request = AssistantRequest(turns=[Turn("user", "What can you do?")], about=about)
    assert reply_kind(request) == "about"
    answer = compose_answer(request)
    assert "A backend is a small class with one async streaming method." in answer
    assert "[Assistant backends](/knowledge/kb/backends.md" in answer
