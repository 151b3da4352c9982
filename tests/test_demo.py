"""``manage.py parley_demo``: demo users and rooms, created once however often it runs."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory

from parley.models import Room
from parley.rooms import selectors

pytestmark = pytest.mark.django_db


def test_parley_demo_is_idempotent():
    first, second = StringIO(), StringIO()
    call_command("parley_demo", stdout=first)
    call_command("parley_demo", "--base-url", "http://demo.test", stdout=second)

    # django-axes (the example project's login throttling) needs the login's request.
    login = RequestFactory().post("/login/")
    demo = authenticate(login, username="demo", password="demo-pass-123")
    guest = authenticate(login, username="guest", password="demo-pass-123")
    assert demo is not None and guest is not None
    assert Room.objects.count() == 2
    private = Room.objects.get(title="Private notes")
    team = Room.objects.get(title="Team room")
    assert private.kind == "private" and private.owner == demo
    assert team.kind == "shared" and team.owner == demo
    assert selectors.room_members(room=team) == [demo, guest]
    assert selectors.rooms_for_user(user=guest) == [team]

    out = second.getvalue()
    assert "User demo existed already" in out
    assert "Created user demo with the password demo-pass-123" in first.getvalue()
    assert f"http://demo.test/rooms/{private.public_id}/" in out
    assert f"http://demo.test/rooms/{team.public_id}/" in out


def test_parley_demo_never_changes_an_existing_user(django_user_model):
    site_user = django_user_model.objects.create_user(username="demo", password="the-sites-own")
    before = site_user.password
    out = StringIO()
    call_command("parley_demo", stdout=out)

    site_user.refresh_from_db()
    assert site_user.password == before  # no reset: its sessions live on
    assert site_user.check_password("the-sites-own")
    assert "User demo existed already: left as it was" in out.getvalue()
    assert "Created user guest" in out.getvalue()
