"""``manage.py parley_index``: (re)build the knowledge index from every configured source."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from parley.contrib.commands import progress_bar
from parley.knowledge.embeddings import embedder_get
from parley.knowledge.registry import registrations
from parley.knowledge.sources import (
    FILES,
    file_document,
    files_listed,
    folders_configured,
    object_document,
)
from parley.knowledge.store import SyncReport, source_remove, source_sync, sources_stored

# What embedding one passage (its title and its windows) takes with the default model on
# one small core (bench/results/retrieval-2026-12-04-1842.json: Parley's 216 passages in
# 30.9 s; 32.4 s in an earlier run that day), to say what a first run costs.
EMBED_SECONDS = 0.15


class Command(BaseCommand):
    help = (
        "Index the files of PARLEY['KNOWLEDGE']['FOLDERS'] and the objects of registered "
        "models; unchanged documents are left alone, vanished ones removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-progress", action="store_true", help="Do not draw the progress bars."
        )

    def handle(self, *args: Any, no_progress: bool = False, **options: Any) -> None:
        started = time.monotonic()
        reports: dict[str, SyncReport] = {}
        embedder = embedder_get()
        if embedder is not None:
            # The first run's cost: every passage is embedded once (later, only changed ones).
            self.stdout.write(
                f"Embedding new and changed passages with {embedder.name} "
                f"(about {EMBED_SECONDS:g} s a passage on a small CPU, the first time)."
            )

        listed = files_listed(folders=folders_configured())
        with self._bar(len(listed), "files", no_progress) as bar:
            reports[FILES] = source_sync(
                source=FILES,
                documents=(file_document(key=key, path=path) for key, path in listed),
                on_document=lambda _: bar.update(),
            )
        for registration in registrations():
            objects = registration.objects()
            with self._bar(objects.count(), registration.label, no_progress) as bar:
                reports[registration.label] = source_sync(
                    source=registration.label,
                    documents=(
                        object_document(registration=registration, obj=obj)
                        for obj in objects.iterator()
                    ),
                    # source_sync is done with it before the loop moves on
                    on_document=lambda _: bar.update(),
                )
        dropped = {
            source: source_remove(source=source) for source in sources_stored() - set(reports)
        }

        for source, report in reports.items():
            self.stdout.write(
                f"{source}: {len(report.keys)} documents, {report.passages} passages "
                f"({report.added} new, {report.changed} changed, {report.unchanged} unchanged, "
                f"{report.removed} removed)"
            )
        for source, count in sorted(dropped.items()):
            self.stdout.write(f"{source}: no longer a source, {count} documents removed")
        if embedder is None:
            self.stdout.write("No embedding model: retrieval is BM25 alone (docs/knowledge.md).")
        documents = sum(len(report.keys) for report in reports.values())
        passages = sum(report.passages for report in reports.values())
        self.stdout.write(
            self.style.SUCCESS(
                f"Indexed {documents} documents ({passages} passages) from "
                f"{len(reports)} sources in {time.monotonic() - started:.1f} s."
            )
        )

    def _bar(self, total: int, label: str, disabled: bool) -> tqdm[Any]:
        return progress_bar(
            self, total=total, desc=f"Indexing {label}", unit="doc", disabled=disabled
        )
