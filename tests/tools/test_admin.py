"""The audit in the admin: every call with who asked and who decided; the standing
approvals, which can be revoked there."""

from __future__ import annotations

import pytest

from parley.models import ToolGrant, ToolRun
from tests.tools.test_calls import answer_to

pytestmark = pytest.mark.django_db


def test_the_audit_lists_each_call_with_who_asked_and_who_decided(
    admin_client, private_room, alice
):
    answer = answer_to(private_room, alice)
    ToolRun.objects.create(
        answer=answer, room=private_room, asker=alice, call_id="c", tool="rename_room",
        arguments="{}", round=1, position=0, status=ToolRun.Status.DENIED, decided_by=alice,
    )  # fmt: skip
    page = admin_client.get("/admin/parley/toolrun/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "rename_room" in text and "Denied" in text and "alice" in text
    assert admin_client.get("/admin/parley/toolrun/add/").status_code == 403  # read only


def test_an_always_allow_is_revoked_by_deleting_it(admin_client, alice):
    grant = ToolGrant.objects.create(user=alice, tool="pin")
    assert "pin" in admin_client.get("/admin/parley/toolgrant/").content.decode()
    page = admin_client.post(f"/admin/parley/toolgrant/{grant.pk}/delete/", {"post": "yes"})
    assert page.status_code == 302
    assert not ToolGrant.objects.exists()
