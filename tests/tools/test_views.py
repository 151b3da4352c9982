"""The room page tells its script whether the reader may decide on other members' calls;
the server checks again when they do (tests/tools/test_approvals.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

pytestmark = pytest.mark.django_db


def approver_attribute(client, room) -> str:
    page = client.get(f"/rooms/{room.public_id}/").content.decode()
    return page.split('data-approver="', 1)[1].split('"', 1)[0]


def test_only_a_member_holding_the_approver_permission_is_told_so(
    client, settings, shared_room, bob
):
    client.force_login(bob)
    assert approver_attribute(client, shared_room) == "false"  # no approver permission set
    settings.PARLEY = {"TOOLS": {"APPROVER_PERMISSION": "parley.change_toolrun"}}
    assert approver_attribute(client, shared_room) == "false"  # bob does not hold it
    bob.user_permissions.add(Permission.objects.get(codename="change_toolrun"))
    client.force_login(type(bob).objects.get(pk=bob.pk))  # permissions are cached per user
    assert approver_attribute(client, shared_room) == "true"
