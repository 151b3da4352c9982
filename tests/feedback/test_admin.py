"""Feedback in the admin: listed with its rating, comment and answer, filtered, searched;
its detail shows what was judged, read only."""

from __future__ import annotations

import pytest

from parley.feedback.services import feedback_give
from parley.models import Feedback, ToolRun
from tests.feedback.test_export import SOURCE, answer, ask

pytestmark = pytest.mark.django_db


@pytest.fixture
def rated(private_room, alice, shared_room, bob):
    reply = answer(ask(private_room, alice, "Where is order 7?"), "It shipped.", model="llama")
    ToolRun.objects.create(
        answer=reply, room=private_room, asker=alice, call_id="c1", tool="order_status",
        arguments='{"number": 7}', round=1, position=0, status=ToolRun.Status.DONE,
        result="shipped <b>today</b>",
    )  # fmt: skip
    feedback_give(
        room=private_room, answer_id=reply.pk, user=alice, visitor=None, rating="down",
        comment="Say <i>when</i> it arrives.",
    )  # fmt: skip
    other = answer(ask(shared_room, bob, "Which pier?"), "The north pier.", model="qwen")
    feedback_give(
        room=shared_room, answer_id=other.pk, user=bob, visitor=None, rating="up", comment=""
    )
    return Feedback.objects.get(rating="down")


def test_the_list_shows_each_with_its_rating_comment_answer_room_and_who(admin_client, rated):
    page = admin_client.get("/admin/parley/feedback/")
    assert page.status_code == 200
    text = page.content.decode()
    for shown in ("Thumbs down", "Thumbs up", "It shipped.", "Notes", "alice", "llama", "qwen"):
        assert shown in text
    assert "Say &lt;i&gt;when&lt;/i&gt; it arrives." in text  # escaped, never markup


def test_filters_and_search_narrow_the_list(admin_client, rated):
    down = admin_client.get("/admin/parley/feedback/?rating=down").content.decode()
    assert "It shipped." in down and "The north pier." not in down
    by_model = admin_client.get("/admin/parley/feedback/?model=qwen").content.decode()
    assert "The north pier." in by_model and "It shipped." not in by_model
    found = admin_client.get("/admin/parley/feedback/?q=arrives").content.decode()
    assert "It shipped." in found and "The north pier." not in found
    assert admin_client.get("/admin/parley/feedback/?backend=default").status_code == 200


def test_the_detail_shows_the_question_answer_sources_and_tool_steps_read_only(admin_client, rated):
    page = admin_client.get(f"/admin/parley/feedback/{rated.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    for shown in ("Where is order 7?", "It shipped.", SOURCE["title"], SOURCE["document"],
                  "order_status", "shipped &lt;b&gt;today&lt;/b&gt;"):  # fmt: skip
        assert shown in text
    assert 'name="comment"' not in text  # no form field: read only
    assert admin_client.get("/admin/parley/feedback/add/").status_code == 403
