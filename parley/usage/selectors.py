"""Reads of the usage rows: their totals, for the admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum

from ..models import Usage

# Rows of each summary table: the biggest spenders first.
SUMMARY_ROWS = 20


@dataclass(frozen=True)
class UsageSummary:
    """A table of totals of usage rows: one row per user, room or model (``name``)."""

    title: str
    rows: list[dict[str, Any]]


def _sums() -> dict[str, Any]:
    """What each row of a summary adds up."""
    return {
        "answers": Count("pk"),
        "estimated_answers": Count("pk", filter=Q(estimated=True)),
        "prompt": Sum("prompt_tokens"),
        "completion": Sum("completion_tokens"),
        "spent": Sum("cost"),
    }


def _totals(queryset: QuerySet[Usage], *fields: str) -> list[dict[str, Any]]:
    rows = (
        queryset.values(*fields)
        .annotate(**_sums())
        .order_by(F("spent").desc(nulls_last=True), F("prompt").desc(), *fields)
    )
    return list(rows[:SUMMARY_ROWS])


def usage_summaries(queryset: QuerySet[Usage]) -> list[UsageSummary]:
    """The answers, tokens and cost of ``queryset`` in all, then per user (a visitor's
    answers make one row), per room and per model, biggest first."""
    queryset = queryset.order_by()  # no ordering of its own in the GROUP BY
    whole = queryset.aggregate(**_sums())
    whole["name"] = "All"
    users = _totals(queryset, "user__username")
    for row in users:
        row["name"] = row.pop("user__username") or "Visitors"
    rooms = _totals(queryset, "room__title", "room__public_id")
    for row in rooms:
        row["name"] = row.pop("room__title") or "(deleted)"
        del row["room__public_id"]
    models = _totals(queryset, "model")
    for row in models:
        row["name"] = row.pop("model") or "(unnamed)"
    return [
        UsageSummary("Total", [whole]),
        UsageSummary("Per user", users),
        UsageSummary("Per room", rooms),
        UsageSummary("Per model", models),
    ]
