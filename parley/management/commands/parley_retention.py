"""``manage.py parley_retention``: delete what ``PARLEY["RETENTION"]`` keeps no longer, and
the visitors ``VISITORS["EXPIRE_AFTER"]`` is done with.

Run it daily (docs/operations.md, "Retention and erasure"), for example from cron::

    17 4 * * * cd /srv/site && .venv/bin/python manage.py parley_retention --no-progress
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone
from tqdm import tqdm

from parley.contrib.commands import progress_bar
from parley.retention.services import KindReport, retention_apply, retention_cutoffs
from parley.retention.services import retention_rooms as rooms_to_prune
from parley.visitors.services import visitors_expire, visitors_stale


class Command(BaseCommand):
    help = (
        "Delete the messages older than PARLEY['RETENTION'] allows for their room's kind, "
        "rooms left with nothing, and visitors not seen for VISITORS['EXPIRE_AFTER']."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="Messages deleted per transaction (default RETENTION['BATCH_SIZE']).",
        )
        parser.add_argument(
            "--pause",
            type=float,
            default=None,
            help="Seconds between two transactions (default RETENTION['PAUSE']).",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="Do not draw the progress bars."
        )

    def handle(
        self,
        *args: Any,
        dry_run: bool = False,
        batch_size: int | None = None,
        pause: float | None = None,
        no_progress: bool = False,
        **options: Any,
    ) -> None:
        now = timezone.now()
        would = "would be deleted" if dry_run else "deleted"
        reports: list[KindReport] = []
        for kind, days, cutoff in retention_cutoffs(now=now):
            total = rooms_to_prune(kind=kind, cutoff=cutoff).count()
            with self._bar(total, kind.lower(), no_progress) as bar:
                reports.append(
                    retention_apply(
                        kind=kind,
                        cutoff=cutoff,
                        days=days,
                        batch_size=batch_size,
                        pause=pause,
                        dry_run=dry_run,
                        on_room=bar.update,
                    )
                )
        visitors = visitors_stale(now=now).count() if dry_run else visitors_expire(now=now)

        for report in reports:
            self.stdout.write(
                f"{report.kind.lower()} rooms (kept {report.days:g} days): {report.messages} "
                f"message(s) {would} in {report.rooms} room(s) old enough to look at, "
                f"{report.rooms_deleted} room(s) left with nothing {would}"
            )
        if not reports:
            self.stdout.write("No retention set (PARLEY['RETENTION']): every message is kept.")
        messages = sum(report.messages for report in reports)
        rooms = sum(report.rooms_deleted for report in reports)
        self.stdout.write(
            self.style.SUCCESS(
                f"{'Dry run: ' if dry_run else ''}{messages} message(s) and {rooms} room(s) "
                f"{would}; {visitors} expired visitor(s) {would}."
            )
        )

    def _bar(self, total: int, label: str, disabled: bool) -> tqdm[Any]:
        return progress_bar(
            self, total=total, desc=f"Pruning {label} rooms", unit="room", disabled=disabled
        )
