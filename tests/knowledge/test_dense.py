"""Dense retrieval with the shipped embedding model (all-MiniLM-L6-v2 on ONNX Runtime): it
computes what sentence-transformers computes, questions in other words find their section,
off-topic questions that share words are refused, the vectors are stored with the passages
and made once, and who may read what is decided before any ranking, by meaning as by
words."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from parley.backends.base import AssistantRequest, SearchContext, Turn
from parley.knowledge import embeddings, graphs
from parley.knowledge.embeddings import MiniLM, embedder_get, passage_windows, vectors_model
from parley.knowledge.excerpts import excerpts_for
from parley.knowledge.graphs import Similarities
from parley.knowledge.index import knowledge_search
from parley.knowledge.store import version_bump
from parley.models import KnowledgePassage
from parley.rooms import services

pytestmark = pytest.mark.django_db

HELP = """# Help

## Stop an answer

While the assistant writes, press Stop: the answer ends where it is and is kept, marked
as stopped.

## Behind nginx

Proxy the WebSocket path with the Upgrade and Connection headers, and raise
proxy_read_timeout above the heartbeat.

## Backups

Copy the database file every night; PostgreSQL users run pg_dump.
"""

DEFAULT = {"BACKEND": "parley.knowledge.embeddings.MiniLM"}


@pytest.fixture(scope="module")
def model() -> MiniLM:
    """The shipped model; its package missing fails on CI, skips on a laptop."""
    try:
        return MiniLM()
    except embeddings.EmbedderUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"the embedding model is not installed: {exc}")


@pytest.fixture
def dense(settings, tmp_path: Path, model, reindex):
    """The help document indexed with embeddings on (as by default)."""
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "help.md").write_text(HELP)
    knowledge = {**settings.PARLEY["KNOWLEDGE"], "FOLDERS": [str(folder)], "EMBEDDINGS": DEFAULT}
    settings.PARLEY = {**settings.PARLEY, "KNOWLEDGE": knowledge}
    assert "Embedding new and changed passages with all-MiniLM-L6-v2/128 " in reindex()
    return folder


@pytest.fixture
def titles(alice):
    """The titles of the passages Alice's search for a query is given."""

    def search(query: str, **options) -> list[str]:
        return [p.title for p in knowledge_search(query=query, user=alice, **options).passages]

    return search


def test_the_model_puts_paraphrases_close_and_strangers_apart(model):
    stop, cancel, capital = model.encode(
        ["How do I stop an answer?", "cancel a response", "What is the capital of Australia?"]
    )
    assert all(abs(np.linalg.norm(v) - 1) < 1e-4 for v in (stop, cancel, capital))
    assert stop @ cancel > 0.5 > 0.1 > stop @ capital


# Vectors sentence-transformers made of a few texts with this model on PyTorch (how: the
# file's "made_by"), to hold Parley's forward pass to.
GOLDEN = json.loads((Path(__file__).parent / "minilm_golden.json").read_text())


@pytest.fixture(scope="module")
def quantized(model) -> MiniLM:
    """The shipped model in int8 (after ``model``, which skips when it is not installed)."""
    return MiniLM(quantized=True)


@pytest.mark.parametrize(("precision", "least"), [("model", 0.9999), ("quantized", 0.97)])
def test_the_forward_pass_computes_what_sentence_transformers_does(request, precision, least):
    """float32 (the default) gives sentence-transformers' vectors, int8 vectors close to
    them, for long, short and non-ASCII texts alike, and the same whether a text is
    embedded with others (as when indexing) or alone (as a question)."""
    embedder = request.getfixturevalue(precision)
    golden = np.array(GOLDEN["vectors"], dtype=np.float32)
    embedder.cache_clear()
    together = embedder.encode(GOLDEN["texts"])
    embedder.cache_clear()
    alone = np.concatenate([embedder.encode([text]) for text in GOLDEN["texts"]])
    cosines = np.sum(together * golden, axis=1)
    assert cosines.min() >= least, dict(zip(GOLDEN["texts"], cosines.round(4), strict=True))
    # float32: padding changes nothing; int8: its texts are run one at a time (activations
    # quantized with the batch's scale would make a text's vector depend on its batch).
    assert np.abs(together - alone).max() < 1e-5


def test_the_model_is_named_by_its_arithmetic_so_vectors_are_not_mixed(model, quantized):
    assert (model.name, quantized.name) == ("all-MiniLM-L6-v2/128", "all-MiniLM-L6-v2/128/int8")


def test_the_int8_scan_gives_the_cosines_float32_gives(model):
    """Similarities, as a search computes them for every passage, are the exact cosines
    to within 0.01 (a saturating 8-bit kernel was off by 0.03), whatever the query's float
    type; a passage without a vector is similar to nothing."""
    passages = model.encode([*GOLDEN["texts"], *HELP.split("\n\n")])
    questions = model.encode(["How do I stop an answer?", "nginx timeout", "hello"])
    nothing = np.zeros((1, model.dimensions), dtype=np.float16)
    similarities = Similarities([passages, nothing])
    for question in questions:
        got = similarities(question)
        assert got.shape == (len(passages) + 1,) and got[-1] == 0
        assert np.abs(got[:-1] - passages @ question).max() < 0.01
        assert np.array_equal(similarities(question.astype(np.float64)), got)
    assert Similarities([np.zeros((0, model.dimensions))])(questions[0]).size == 0
    # The worst case for 16-bit sums: every component as large as it gets, on both sides.
    flat = np.full((1, model.dimensions), model.dimensions**-0.5, dtype=np.float32)
    assert Similarities([flat])(flat[0])[0] == pytest.approx(1, abs=0.01)


def test_vectors_are_quantized_alike_across_chunks_and_matrices(model, monkeypatch):
    """An index's vectors are quantized a chunk at a time, from float16 as stored: the
    scan is the same as of all rows at once, in float32."""
    rows = model.encode([*GOLDEN["texts"], *HELP.split("\n\n")])
    whole, titles = rows[:5].astype(np.float16), rows[5:].astype(np.float16)
    question = model.encode(["How do I stop an answer?"])[0]
    at_once = Similarities([np.concatenate([whole, titles]).astype(np.float32)])(question)
    monkeypatch.setattr(graphs, "CHUNK", 2)
    assert np.array_equal(Similarities([whole, titles])(question), at_once)


def test_an_index_whose_scan_cannot_be_built_is_searched_by_words(
    dense, titles, monkeypatch, caplog
):
    def broken(vectors):
        raise MemoryError

    monkeypatch.setattr(graphs, "Similarities", broken)
    version_bump()
    assert titles("press Stop while the assistant writes")[0] == "Help › Stop an answer"
    assert "Help › Stop an answer" not in titles("can I cancel a response halfway?")
    assert "dense retrieval is off for this index" in caplog.text


def test_a_question_in_other_words_finds_its_section(dense, settings, titles):
    question = "can I cancel a response halfway?"
    assert titles(question)[0] == "Help › Stop an answer"
    knowledge = {**settings.PARLEY["KNOWLEDGE"], "EMBEDDINGS": None}
    settings.PARLEY = {**settings.PARLEY, "KNOWLEDGE": knowledge}
    # BM25 alone: not one word of it is in the section.
    assert "Help › Stop an answer" not in titles(question)


def test_off_topic_questions_are_refused_even_when_they_share_words(dense, titles):
    assert titles("how do I set up a vpn proxy on my home router at night?") == []
    assert titles("what's a good pasta recipe") == []
    assert titles("how high should the nginx proxy_read_timeout be")[0] == "Help › Behind nginx"


def test_a_follow_up_is_searched_in_the_light_of_the_askers_previous_turn(dense, titles):
    request = AssistantRequest(
        turns=[
            Turn("user", "how do I put it behind nginx?", author="alice"),
            Turn("assistant", "Proxy the WebSocket path with the Upgrade header."),
            Turn("user", "what was the other timeout thing?", author="bob"),
            Turn("user", "and which timeout must I raise?", author="alice"),
        ]
    )
    context = request.search_context
    assert context.question == "how do I put it behind nginx?"  # Alice's, not Bob's
    assert context.answer == "Proxy the WebSocket path with the Upgrade header."
    found = titles(request.question, context=context)
    assert found[0] == "Help › Behind nginx"
    assert AssistantRequest(turns=request.turns[-1:]).search_context == SearchContext()


def test_vectors_are_stored_with_the_passages_and_made_once(dense, reindex, monkeypatch):
    stored = KnowledgePassage.objects.order_by("position")
    assert [p.vector_model for p in stored] == [vectors_model(embedder_get())] * len(stored)
    assert all(len(p.vector) == 4 * 384 for p in stored)  # title and one window, float16
    encoded: list[str] = []
    encode = MiniLM.encode
    monkeypatch.setattr(
        MiniLM, "encode", lambda self, texts: encoded.extend(texts) or encode(self, texts)
    )
    embedder_get().cache_clear()
    assert "1 unchanged" in reindex()
    assert encoded == []
    (dense / "help.md").write_text(HELP.replace("every night", "every hour"))
    assert "1 changed" in reindex()
    # The changed passage alone, by title and its one window; the others' vectors are kept.
    assert encoded[0] == "Help › Backups" and len(encoded) == 2 and "every hour" in encoded[1]


LONG = (
    """# Manual

## Shortcuts

"""
    + " ".join(
        f"Press {key} to open the {place} panel, where the {place} settings are listed."
        for key, place in [("F1", "help"), ("F2", "rooms"), ("F3", "members"), ("F4", "files")] * 3
    )
    + """

To halt a reply mid-way, press Escape.
"""
)


def test_a_long_section_is_found_by_what_its_last_sentence_means(dense, titles, model, reindex):
    """A passage is embedded in windows, each headed by its title: a question in other words
    about a sentence far past the model's 128 word pieces still finds its section."""
    (dense / "manual.md").write_text(LONG)
    title, text = "Manual › Shortcuts", LONG.split("## Shortcuts", 1)[1].strip()
    assert model.tokens(text) > 128  # one vector of the passage would never see the end
    windows = passage_windows(model, title, text)
    assert len(windows) > 2 and all(window.startswith(f"{title}\n") for window in windows)
    assert "press Escape" in windows[-1] and model.tokens(windows[-1]) <= 64
    assert "1 new" in reindex()
    assert titles("can I cancel a response halfway?")[:2] == [
        "Help › Stop an answer",
        "Manual › Shortcuts",
    ]


def test_what_a_reader_may_not_read_is_never_a_candidate_by_meaning_either(
    dense, register_messages, reindex, alice, bob
):
    """Alice's note is the closest in meaning to the question; Bob is never given it, nor
    told it exists; in a room with both, Alice is told something was withheld."""
    register_messages(owner="author")
    room = services.room_create(owner=alice, title="Vault")
    services.message_post(room=room, author=alice, text="To halt a reply mid-way, press Stop.")
    reindex()
    question = "how do I halt a reply mid-way?"
    assert knowledge_search(query=question, user=alice).passages[0].title == "Vault #1"
    theirs = knowledge_search(query=question, user=bob)
    assert "Vault #1" not in [p.title for p in theirs.passages] and not theirs.withheld
    ours = knowledge_search(query=question, user=alice, audience=[bob])
    assert "Vault #1" not in [p.title for p in ours.passages] and ours.withheld


def test_a_passage_not_embedded_yet_is_still_found_by_its_words(dense, titles):
    """A passage stored before the model was installed (or by a process without it) has
    no vector: its words alone decide, as without embeddings."""
    KnowledgePassage.objects.create(
        source="files", document="kb/tea.md", position=0, title="Tea", text="Brew green tea."
    )
    version_bump()
    assert titles("how do I brew green tea?") == ["Tea"]
    assert titles("can I cancel a response halfway?")[0] == "Help › Stop an answer"


def test_a_process_without_the_model_keeps_the_vectors_others_made(dense, settings, reindex):
    vectors = dict(KnowledgePassage.objects.values_list("title", "vector"))
    knowledge = {**settings.PARLEY["KNOWLEDGE"], "EMBEDDINGS": None}
    settings.PARLEY = {**settings.PARLEY, "KNOWLEDGE": knowledge}
    assert "1 unchanged" in reindex()
    (dense / "help.md").write_text(HELP.replace("every night", "every hour"))
    assert "1 changed" in reindex()
    kept = dict(KnowledgePassage.objects.values_list("title", "vector"))
    assert kept["Help › Backups"] is None  # changed, and no model here to embed it
    assert kept["Help › Stop an answer"] == vectors["Help › Stop an answer"]


class Counted(embeddings.Embedder):
    """An embedder that counts how often it is loaded."""

    name = "counted"
    dimensions = 3
    loaded = 0

    def __init__(self) -> None:
        type(self).loaded += 1

    def encode(self, texts):
        return np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3)


def test_an_index_without_vectors_never_loads_the_model(settings, indexed, titles):
    """A site with nothing embedded (BM25 alone so far) searches without the model in
    memory: it is loaded with the first vectors to compare."""
    knowledge = {**settings.PARLEY["KNOWLEDGE"], "EMBEDDINGS": {"BACKEND": f"{__name__}.Counted"}}
    settings.PARLEY = {**settings.PARLEY, "KNOWLEDGE": knowledge}
    assert titles("PostgreSQL production database")
    assert Counted.loaded == 0


def test_a_passage_found_by_meaning_alone_is_quoted_from_its_closest_window(dense, alice, reindex):
    """What the offline assistant quotes of a passage that holds none of the question's
    words is the sentence it was found by, not the start of its section."""
    (dense / "manual.md").write_text(LONG)
    reindex()
    question = "how can I interrupt an answer that is still being written?"
    found = knowledge_search(query=question, user=alice).passages
    manual = next(p for p in found if p.title == "Manual › Shortcuts")
    assert "press Escape" in manual.focus and "F1" not in manual.focus
    assert excerpts_for(question, [manual.text], [manual.focus]) == [
        "To halt a reply mid-way, press Escape."
    ]
    assert excerpts_for(question, [manual.text])[0].startswith("Press F1 to open the help panel")
