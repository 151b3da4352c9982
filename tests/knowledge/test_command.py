"""``manage.py parley_index``: files become documents with keys, titles and links; running
it again writes only what changed."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from parley.models import KnowledgePassage, KnowledgeVersion


def passages(document: str) -> list[tuple[str, str]]:
    return list(
        KnowledgePassage.objects.filter(source="files", document=document)
        .order_by("position")
        .values_list("title", "url")
    )


def test_indexes_the_markdown_and_text_files_of_the_folders(indexed):
    assert sorted(set(KnowledgePassage.objects.values_list("document", flat=True))) == [
        "kb/backends.md",
        "kb/guides/deploying.md",
        "kb/notes.txt",
    ]
    assert passages("kb/backends.md") == [
        ("Assistant backends", "/knowledge/kb/backends.md#assistant-backends"),
        (
            "Assistant backends › OpenAI-compatible servers",
            "/knowledge/kb/backends.md#openai-compatible-servers",
        ),
        (
            "Assistant backends › The offline backend",
            "/knowledge/kb/backends.md#the-offline-backend",
        ),
    ]
    assert passages("kb/notes.txt") == [("Notes", "/knowledge/kb/notes.txt")]
    assert "files: 3 documents, 7 passages (3 new, 0 changed, 0 unchanged, 0 removed)" in indexed
    assert "Indexed 3 documents (7 passages) from 1 sources" in indexed
    assert "No embedding model: retrieval is BM25 alone" in indexed  # tests/settings.py


def test_a_single_file_is_a_source_too(settings, knowledge_folder, reindex):
    settings.PARLEY = {
        "KNOWLEDGE": {"FOLDERS": [str(knowledge_folder / "backends.md")], "EMBEDDINGS": None}
    }
    reindex()
    assert set(KnowledgePassage.objects.values_list("document", flat=True)) == {"backends.md"}


def test_running_again_writes_only_what_changed(indexed, knowledge_folder, reindex):
    version = KnowledgeVersion.objects.get().stamp
    ids = set(KnowledgePassage.objects.values_list("pk", flat=True))
    assert "0 new, 0 changed, 3 unchanged, 0 removed" in reindex()
    assert KnowledgeVersion.objects.get().stamp == version  # every process keeps its index
    assert set(KnowledgePassage.objects.values_list("pk", flat=True)) == ids

    (knowledge_folder / "notes.txt").write_text("Descale it weekly.\n")
    (knowledge_folder / "guides" / "deploying.md").unlink()
    (knowledge_folder / "faq.md").write_text("# FAQ\n\n## Why?\n\nBecause.\n")
    out = reindex()
    assert "1 new, 1 changed, 1 unchanged, 1 removed" in out
    assert KnowledgeVersion.objects.get().stamp != version
    assert not passages("kb/guides/deploying.md")
    assert KnowledgePassage.objects.get(document="kb/notes.txt").text == "Descale it weekly."


def test_a_folder_no_longer_configured_is_dropped(indexed, settings, reindex):
    settings.PARLEY = {"KNOWLEDGE": {"FOLDERS": []}}
    out = reindex()
    assert "files: 0 documents" in out
    assert "3 removed" in out
    assert not KnowledgePassage.objects.exists()


def test_missing_folders_are_skipped_and_reported_by_a_check(settings, tmp_path, reindex):
    from parley.checks import check_knowledge

    settings.PARLEY = {"KNOWLEDGE": {"FOLDERS": [str(tmp_path / "nowhere")]}}
    assert "files: 0 documents" in reindex()
    [warning] = check_knowledge()
    assert warning.id == "parley.W002"
    assert "nowhere" in warning.msg


def test_a_progress_bar_per_source_on_a_terminal(knowledge_settings, db):
    class Terminal(StringIO):
        def isatty(self) -> bool:
            return True

    terminal, piped = Terminal(), StringIO()
    call_command("parley_index", stdout=StringIO(), stderr=terminal)
    assert "Indexing files: 100%" in terminal.getvalue()
    assert "3/3" in terminal.getvalue()
    call_command("parley_index", stdout=StringIO(), stderr=piped)
    assert piped.getvalue() == ""  # no bar drawn into logs and pipes
