"""The admin's usage: every answer's row, and the totals per user, room and model of what
the filters select; quotas set there with what each person has used of them."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from parley.models import Quota, QuotaTally, Usage
from parley.usage.quotas import quota_take

pytestmark = pytest.mark.django_db


def summary(page: str, title: str) -> list[list[str]]:
    """The cells of the summary table under the heading ``title``."""
    table = page.split(f"<h2>{title}</h2>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1], re.S)
    return [[cell.strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)] for row in rows]


@pytest.fixture
def spent(alice, bob, private_room, shared_room):
    def row(user, room, model, tokens, cost, estimated=False):
        return Usage(
            user=user, room=room, backend="default", model=model, prompt_tokens=tokens,
            completion_tokens=tokens // 2, cost=cost, estimated=estimated,
        )  # fmt: skip

    Usage.objects.bulk_create(
        [
            row(alice, private_room, "gpt-4o-mini", 1000, Decimal("0.0003")),
            row(alice, shared_room, "gpt-4o-mini", 2000, Decimal("0.0006"), estimated=True),
            row(bob, shared_room, "gpt-4o", 4000, Decimal("0.03")),
            row(None, None, "offline assistant", 0, None),
        ]
    )


def test_the_totals_per_user_room_and_model(admin_client, spent, shared_room):
    page = admin_client.get("/admin/parley/usage/").content.decode()
    assert summary(page, "Total") == [["All", "4", "1", "7000", "3500", "0.030900"]]
    assert summary(page, "Per user") == [
        ["bob", "1", "0", "4000", "2000", "0.030000"],
        ["alice", "2", "1", "3000", "1500", "0.000900"],
        ["Visitors", "1", "0", "0", "0", "–"],
    ]
    assert summary(page, "Per room")[0] == [shared_room.title, "2", "1", "6000", "3000", "0.030600"]
    assert [row[0] for row in summary(page, "Per model")] == [
        "gpt-4o", "gpt-4o-mini", "offline assistant",
    ]  # fmt: skip


def test_the_totals_follow_the_filters(admin_client, spent):
    page = admin_client.get("/admin/parley/usage/?model=gpt-4o-mini").content.decode()
    assert summary(page, "Total") == [["All", "2", "1", "3000", "1500", "0.000900"]]
    assert [row[0] for row in summary(page, "Per user")] == ["alice"]


def test_usage_is_read_only(admin_client, spent):
    assert admin_client.get("/admin/parley/usage/add/").status_code == 403


def test_a_quota_is_set_in_the_admin_and_shows_what_was_used(admin_client, alice):
    response = admin_client.post(
        "/admin/parley/quota/add/",
        {
            "user": alice.pk, "period": "day", "max_answers": "3", "max_tokens": "",
            "tallies-TOTAL_FORMS": "0", "tallies-INITIAL_FORMS": "0",
        },
    )  # fmt: skip
    assert response.status_code == 302
    quota = Quota.objects.get(user=alice)
    assert (quota.max_answers, quota.max_tokens) == (3, None)
    quota_take(user=alice, visitor_id=None)
    assert QuotaTally.objects.get(quota=quota).answers == 1
    page = admin_client.get(f"/admin/parley/quota/{quota.pk}/change/").content.decode()
    assert f"user:{alice.pk}" in page
    listing = admin_client.get("/admin/parley/quota/").content.decode()
    assert "alice: 3 answers per day" in listing
