"""Writes to the knowledge index tables. Every change bumps the index version in the same
transaction, which is how every server process learns that its in-memory index is stale."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import connection, transaction

from ..models import KnowledgePassage, KnowledgeVersion
from .chunking import TITLE_SEPARATOR
from .embeddings import embedder_get, passage_vectors, vectors_model
from .sources import Document


def version_get() -> str:
    """The index's current version stamp ("" before anything was ever indexed). Every
    search reads it first: one plain statement, without the ORM's compiling."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT stamp FROM {KnowledgeVersion._meta.db_table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row is not None else ""


def version_bump() -> None:
    """Give the index a new version stamp. Call inside the transaction that changed it."""
    stamp = uuid.uuid4().hex
    if not KnowledgeVersion.objects.filter(pk=1).update(stamp=stamp):
        KnowledgeVersion.objects.update_or_create(pk=1, defaults={"stamp": stamp})


_ROW = ("title", "url", "text", "owner", "permission")


def _rows(document: Document) -> list[tuple[str, str, str, str, str]]:
    return [
        (
            section.title[:300],
            document.section_url(section)[:500],
            section.text,
            document.owner,
            document.permission,
        )
        for section in document.sections
    ]


def document_store(*, document: Document) -> bool:
    """Store ``document``'s passages in place of its old ones, each with its embedding
    (:func:`parley.knowledge.embeddings.embedder_get`); returns whether anything changed
    (an unchanged document is not written, and the version stays). A change of owner or
    permission alone is a change, and so is a change of embedding model.

    Embeddings are computed before the transaction (a model takes a while: the tables stay
    free meanwhile), and only for passages whose title or text changed."""
    rows = _rows(document)
    embedder = embedder_get()
    model = vectors_model(embedder) if embedder is not None else ""
    current = KnowledgePassage.objects.filter(source=document.source, document=document.key)
    stored = list(current.order_by("position").values_list(*_ROW, "vector", "vector_model"))
    # Without a model here, the vectors another process made stand (they are kept below).
    if [row[:-2] for row in stored] == rows and (
        embedder is None or all(row[-1] == model for row in stored)
    ):
        return False
    # What each passage of the same title and text had: its vector, by whichever model.
    known: dict[tuple[str, str], tuple[bytes, str]] = {
        (row[0], row[2]): (bytes(row[-2]), row[-1]) for row in stored if row[-2] is not None
    }
    vectors = [known.get((row[0], row[2])) for row in rows]
    if embedder is not None:
        missing = [i for i, kept in enumerate(vectors) if kept is None or kept[1] != model]
        computed = passage_vectors(embedder, [(rows[i][0], rows[i][2]) for i in missing])
        for i, vector in zip(missing, computed, strict=True):
            vectors[i] = (vector, model)
    with transaction.atomic():
        current.delete()
        KnowledgePassage.objects.bulk_create(
            KnowledgePassage(
                source=document.source,
                document=document.key,
                position=position,
                vector=kept[0] if kept else None,
                vector_model=kept[1] if kept else "",
                **dict(zip(_ROW, row, strict=True)),
            )
            for position, (row, kept) in enumerate(zip(rows, vectors, strict=True))
        )
        version_bump()
    return True


def document_remove(*, source: str, key: str) -> bool:
    """Remove a document's passages; returns whether it had any."""
    with transaction.atomic():
        deleted, _ = KnowledgePassage.objects.filter(source=source, document=key).delete()
        if deleted:
            version_bump()
    return bool(deleted)


@dataclass
class SyncReport:
    """What :func:`source_sync` did, counted in documents (and passages stored)."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    passages: int = 0
    keys: set[str] = field(default_factory=set)


def source_sync(
    *,
    source: str,
    documents: Iterable[Document],
    on_document: Callable[[Document], object] | None = None,
) -> SyncReport:
    """Make the index hold exactly ``documents`` for ``source``: store each (one transaction
    per document, so readers are never blocked for long) and remove the documents of the
    source that are no longer there. ``on_document`` is called after each one (progress)."""
    report = SyncReport()
    known = set(KnowledgePassage.objects.filter(source=source).values_list("document", flat=True))
    for document in documents:
        report.keys.add(document.key)
        report.passages += len(document.sections)
        if document_store(document=document):
            if document.key in known:
                report.changed += 1
            else:
                report.added += 1
        else:
            report.unchanged += 1
        if on_document is not None:
            on_document(document)
    for key in sorted(known - report.keys):
        document_remove(source=source, key=key)
        report.removed += 1
    return report


def sources_stored() -> set[str]:
    """The sources that have passages in the index."""
    return set(KnowledgePassage.objects.order_by().values_list("source", flat=True).distinct())


def source_remove(*, source: str) -> int:
    """Remove every passage of ``source`` (a folder list or model no longer configured);
    returns how many documents went."""
    with transaction.atomic():
        keys = set(
            KnowledgePassage.objects.filter(source=source).values_list("document", flat=True)
        )
        if keys:
            KnowledgePassage.objects.filter(source=source).delete()
            version_bump()
    return len(keys)


def document_text(*, source: str, key: str) -> tuple[str, str] | None:
    """The title and whole Markdown text of an indexed document, its passages joined in
    order; ``None`` if the index has no such document."""
    rows = list(
        KnowledgePassage.objects.filter(source=source, document=key)
        .order_by("position")
        .values_list("title", "text")
    )
    if not rows:
        return None
    return rows[0][0].split(TITLE_SEPARATOR)[0], "\n\n".join(text for _, text in rows)
