"""Who may read /metrics: staff, or a scraper with the token; everyone else gets 401."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_staff_read_the_metrics_and_others_are_refused(client, alice, bob):
    url = reverse("parley:metrics")
    refused = client.get(url)
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")

    client.force_login(bob)  # logged in, not staff
    assert client.get(url).status_code == 401

    alice.is_staff = True
    alice.save()
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"] == "no-store"
    assert b"# TYPE parley_answers_total counter" in response.content


def test_the_token_opens_it_and_a_near_miss_does_not(client, settings):
    settings.PARLEY = {**settings.PARLEY, "METRICS_TOKEN": "the-token"}
    url = reverse("parley:metrics")
    assert client.get(url, HTTP_AUTHORIZATION="Bearer the-token").status_code == 200
    for sent in ("Bearer the-toke", "Bearer the-token2", "the-token", "Bearer "):
        assert client.get(url, HTTP_AUTHORIZATION=sent).status_code == 401, sent
