"""``manage.py parley_feedback_export``: the feedback given on answers, as JSON Lines for
evaluation; with ``--pairs``, the chosen/rejected pairs of answers regenerated instead
(docs/operations.md, Feedback). For example::

    manage.py parley_feedback_export --since 2026-12-01 --output feedback.jsonl
    manage.py parley_feedback_export --pairs --output pairs.jsonl
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from parley.feedback.export import feedback_pairs, feedback_record
from parley.feedback.selectors import feedback_by_exchange, feedback_rows
from parley.models import Feedback

PROGRESS_EVERY = 1000  # lines written between two notes on stderr


class Command(BaseCommand):
    help = (
        "Write the feedback on answers as JSON Lines (one object a feedback: question, "
        "answer, rating, comment, sources, tool steps, backend, model), or with --pairs the "
        "prompt/chosen/rejected pairs of answers regenerated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")
        parser.add_argument(
            "--since",
            type=_moment,
            help="Only feedback given or changed since then: a date (2026-12-01) or an ISO "
            "date and time, in the site's time zone unless it names one.",
        )
        parser.add_argument("--rating", choices=Feedback.Rating.values, help="Only this rating.")
        parser.add_argument(
            "--pairs", action="store_true", help="Write preference pairs instead of records."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since, rating = options["since"], options["rating"]
        if options["pairs"] and rating:
            raise CommandError("--pairs reads both ratings: leave --rating out.")
        lines: Iterator[dict[str, Any]]
        if options["pairs"]:
            lines = feedback_pairs(feedback_by_exchange(since=since))
        else:
            lines = map(feedback_record, feedback_rows(since=since, rating=rating))
        path = options["output"]
        if path:
            with open(path, "w", encoding="utf-8") as out:
                written = self._write(lines, out.write)
        else:
            written = self._write(lines, self.stdout.write)
        kind = "pair(s)" if options["pairs"] else "feedback"
        self.stderr.write(f"Wrote {written} {kind}{f' to {path}' if path else ''}.")

    def _write(self, lines: Iterator[dict[str, Any]], write: Callable[[str], Any]) -> int:
        written = 0
        for line in lines:
            write(json.dumps(line, ensure_ascii=False) + "\n")
            written += 1
            if written % PROGRESS_EVERY == 0:
                self.stderr.write(f"{written} written…")
        return written


def _moment(value: str) -> datetime:
    """``--since``: a date (its midnight) or a date and time, made aware if naive."""
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ValueError(value)
        moment = datetime.combine(day, time())
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)
