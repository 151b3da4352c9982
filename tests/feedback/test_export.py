"""``manage.py parley_feedback_export``: one JSON line a feedback with what was judged, and
preference pairs of regenerated answers."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from parley.feedback.services import feedback_give
from parley.models import Feedback, Message, Room, ToolRun

pytestmark = pytest.mark.django_db

SOURCE = {
    "title": "Travel › The ferry",
    "url": "/knowledge/travel.md",
    "document": "files:travel.md",
}


def ask(room: Room, author, question: str) -> Message:
    seq = Message.objects.filter(room=room).count()
    return Message.objects.create(room=room, seq=seq + 1, role="user", author=author, text=question)


def answer(question: Message, text: str, *, model: str = "m-1", version_of=None) -> Message:
    seq = Message.objects.filter(room=question.room).count()
    return Message.objects.create(
        room=question.room, seq=seq + 1, role="assistant", reply_to=question, text=text,
        model=model, version_of=version_of, sources=[SOURCE],
    )  # fmt: skip


def give(answer: Message, user, rating: str, comment: str = "") -> Feedback | None:
    return feedback_give(
        room=answer.room, answer_id=answer.pk, user=user, visitor=None, rating=rating,
        comment=comment,
    )  # fmt: skip


def export(*args: str) -> tuple[list[dict], str]:
    out, err = StringIO(), StringIO()
    call_command("parley_feedback_export", *args, stdout=out, stderr=err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_each_feedback_is_one_line_with_what_was_judged(private_room, alice):
    question = ask(private_room, alice, "Where is order 7?")
    reply = answer(question, "Order 7 shipped.", model="llama-3.2")
    ToolRun.objects.create(
        answer=reply, room=private_room, asker=alice, call_id="c1", tool="order_status",
        arguments='{"number": 7}', round=1, position=0, status=ToolRun.Status.DONE,
        result="shipped",
    )  # fmt: skip
    give(reply, alice, "down", "Say when it arrives.")

    (record,), err = export()
    assert record["rating"] == "down" and record["comment"] == "Say when it arrives."
    assert record["question"] == "Where is order 7?" and record["answer"] == "Order 7 shipped."
    assert record["sources"] == [SOURCE]
    assert record["tool_steps"] == [
        {"tool": "order_status", "arguments": '{"number": 7}', "result": "shipped",
         "status": "done"},
    ]  # fmt: skip
    assert (record["backend"], record["model"], record["room_kind"]) == (
        "default", "llama-3.2", "private",
    )  # fmt: skip
    assert record["rater"] == "user" and "alice" not in json.dumps(record)
    assert record["answer_id"] == reply.pk and record["regenerated"] is False
    assert record["created_at"] and record["updated_at"]
    assert "Wrote 1 feedback" in err


def test_since_and_rating_choose_what_is_written(private_room, alice, bob, shared_room):
    old = give(answer(ask(private_room, alice, "old?"), "Old."), alice, "up")
    assert old is not None
    Feedback.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=10))
    give(answer(ask(shared_room, alice, "new?"), "New."), bob, "down")
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert [r["question"] for r in export("--since", since)[0]] == ["new?"]
    assert [r["question"] for r in export("--rating", "up")[0]] == ["old?"]
    assert len(export()[0]) == 2


def test_the_file_option_writes_the_lines_there(private_room, alice, tmp_path):
    give(answer(ask(private_room, alice, "q?"), "A."), alice, "up")
    path = tmp_path / "feedback.jsonl"
    lines, err = export("--output", str(path))
    assert lines == []
    assert json.loads(path.read_text())["answer"] == "A."
    assert str(path) in err


def test_pairs_set_an_answer_rated_up_against_its_version_rated_down(
    private_room, shared_room, alice, bob
):
    question = ask(private_room, alice, "How do I descale the machine?")
    first = answer(question, "Use vinegar.", model="small")
    second = answer(question, "Use citric acid, monthly.", model="large", version_of=first)
    give(first, alice, "down", "Vinegar harms the seals.")
    give(second, alice, "up")
    # A shared room: one version judged both ways is no verdict; nothing to pair it with.
    mixed_q = ask(shared_room, alice, "Which pier?")
    mixed = answer(mixed_q, "North.")
    other = answer(mixed_q, "South.", version_of=mixed)
    give(mixed, alice, "up")
    give(mixed, bob, "down")
    give(other, bob, "down")
    # One answer alone, rated: no pair either.
    give(answer(ask(private_room, alice, "Alone?"), "Yes."), alice, "up")

    (pair,), err = export("--pairs")
    assert pair["prompt"] == "How do I descale the machine?"
    assert (pair["chosen"], pair["rejected"]) == ("Use citric acid, monthly.", "Use vinegar.")
    assert (pair["chosen_model"], pair["rejected_model"]) == ("large", "small")
    assert (pair["chosen_id"], pair["rejected_id"]) == (second.pk, first.pk)
    assert "Wrote 1 pair(s)" in err


def test_pairs_with_a_rating_filter_is_refused(db):
    with pytest.raises(CommandError, match="--pairs reads both ratings"):
        export("--pairs", "--rating", "up")
