"""Retention per room kind: what goes, what stays, and the invariants the rest of Parley
relies on (numbering, the queue, a streaming answer, versions, questions of kept answers)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from parley.models import KnowledgePassage, Message, Room, Visitor
from parley.retention.services import (
    retention_apply,
    retention_cutoffs,
    room_prune,
    room_prune_plan,
)
from parley.rooms import services
from tests.retention.conftest import aged, exchanges, later_version, seqs

pytestmark = pytest.mark.django_db


def apply_all(*, dry_run: bool = False, batch_size: int | None = None) -> dict:
    return {
        kind: retention_apply(
            kind=kind, cutoff=cutoff, days=days, dry_run=dry_run, batch_size=batch_size
        )
        for kind, days, cutoff in retention_cutoffs()
    }


def prune(room: Room, days: float) -> tuple[int, bool]:
    cutoff = timezone.now() - timedelta(days=days)
    plan = room_prune_plan(room_id=room.pk, cutoff=cutoff, batch_size=500)
    return room_prune(plan=plan, cutoff=cutoff)


def test_nothing_is_deleted_by_default(private_room, shared_room, alice):
    exchanges(private_room, 3, author=alice, days=4000)
    exchanges(shared_room, 3, author=alice, days=4000)
    assert retention_cutoffs() == []
    assert Message.objects.count() == 12


def test_each_kind_keeps_its_own_days(retention, private_room, shared_room, alice):
    retention(PRIVATE=30, SHARED=90)
    visitor = Visitor.objects.create()
    conversation = Room.objects.create(visitor=visitor, title="Conversation", kind="private")
    for room in (private_room, shared_room, conversation):
        exchanges(room, 2, author=None if room.visitor_id else alice, days=60)
        exchanges(room, 1, author=None if room.visitor_id else alice, days=1)
    reports = apply_all()
    assert seqs(private_room) == [5, 6]  # 60 days is past 30
    assert seqs(shared_room) == [1, 2, 3, 4, 5, 6]  # not past 90
    assert seqs(conversation) == [1, 2, 3, 4, 5, 6]  # VISITOR None: VISITORS["EXPIRE_AFTER"]
    assert reports["PRIVATE"].messages == 4 and reports["SHARED"].messages == 0
    assert "VISITOR" not in reports


def test_a_visitors_conversation_is_pruned_by_its_own_retention(retention):
    retention(VISITOR=7)
    visitor = Visitor.objects.create()
    conversation = Room.objects.create(visitor=visitor, title="Conversation", kind="private")
    exchanges(conversation, 2, author=None, days=8)
    exchanges(conversation, 1, author=None, days=6)
    assert apply_all()["VISITOR"].messages == 4
    assert seqs(conversation) == [5, 6]


def test_the_numbering_goes_on_after_pruned_messages(private_room, alice):
    exchanges(private_room, 3, author=alice, days=40)
    exchanges(private_room, 1, author=alice, days=1)
    assert prune(private_room, 30) == (6, False)
    private_room.refresh_from_db()
    assert private_room.last_seq == 8  # never reset: numbers are not given twice
    message, _ = services.message_post(room=private_room, author=alice, text="next")
    assert message.seq == 9
    assert seqs(private_room) == [7, 8, 9]


def test_a_room_with_nothing_recent_left_goes_with_its_members(shared_room, alice, bob):
    exchanges(shared_room, 2, author=bob, days=40)
    aged(shared_room, days=41)
    assert prune(shared_room, 30) == (4, True)
    assert not Room.objects.filter(pk=shared_room.pk).exists()


def test_a_new_empty_room_is_not_deleted(retention, private_room):
    retention(PRIVATE=30)
    report = apply_all()["PRIVATE"]
    assert (report.rooms, report.rooms_deleted) == (0, 0)
    assert Room.objects.filter(pk=private_room.pk).exists()


def test_an_old_room_never_used_is_deleted(retention, private_room):
    retention(PRIVATE=30)
    aged(private_room, days=31)
    assert apply_all()["PRIVATE"].rooms_deleted == 1
    assert not Room.objects.filter(pk=private_room.pk).exists()


def test_a_recent_edit_keeps_its_old_first_version_and_its_answers(private_room, alice):
    """``version_of`` cascades: deleting the old first version would delete the new one."""
    [(question, answer)] = exchanges(private_room, 1, author=alice, days=40)
    exchanges(private_room, 1, author=alice, days=35)  # an exchange of its own: it goes
    edit = later_version(private_room, question, days=1)
    assert prune(private_room, 30) == (2, False)
    assert seqs(private_room) == [1, 2, 5]
    assert Message.objects.get(pk=edit.pk).version_of_id == question.pk


def test_an_old_chain_goes_whole_when_its_newest_is_old_too(private_room, alice):
    [(question, answer)] = exchanges(private_room, 1, author=alice, days=50)
    later_version(private_room, answer, days=45)  # regenerated, long ago too
    later_version(private_room, question, days=40)  # edited, long ago too
    exchanges(private_room, 1, author=alice, days=1)
    assert prune(private_room, 30) == (4, False)
    assert seqs(private_room) == [5, 6]


def test_a_recent_regeneration_keeps_the_old_question_it_answers(private_room, alice):
    """Asking again and tool approvals read an answer's question (``reply_to``)."""
    [(question, answer)] = exchanges(private_room, 1, author=alice, days=40)
    again = later_version(private_room, answer, days=1)
    assert prune(private_room, 30) == (0, False)
    assert Message.objects.get(pk=again.pk).reply_to_id == question.pk


def test_a_waiting_question_and_a_streaming_answer_are_never_deleted(private_room, alice):
    [(question, answer)] = exchanges(private_room, 1, author=alice, days=40)
    Message.objects.filter(pk=answer.pk).update(status=Message.Status.STREAMING)
    [(waiting, its_answer)] = exchanges(private_room, 1, author=alice, days=40)
    its_answer.delete()
    Message.objects.filter(pk=waiting.pk).update(waiting=True)
    exchanges(private_room, 1, author=alice, days=40)
    aged(private_room, days=41)
    assert prune(private_room, 30) == (2, False)  # the last exchange alone
    assert seqs(private_room) == [1, 2, 3]
    assert Room.objects.filter(pk=private_room.pk).exists()


def test_a_message_answered_since_the_plan_was_made_stays(private_room, alice):
    [(question, answer)] = exchanges(private_room, 1, author=alice, days=40)
    cutoff = timezone.now() - timedelta(days=30)
    plan = room_prune_plan(room_id=private_room.pk, cutoff=cutoff, batch_size=500)
    assert plan.messages == 2
    later_version(private_room, answer, days=0)  # asked again meanwhile
    assert room_prune(plan=plan, cutoff=cutoff) == (0, False)
    assert seqs(private_room) == [1, 2, 3]


def test_a_dry_run_deletes_nothing_and_counts_what_would_go(retention, private_room, alice):
    retention(PRIVATE=30)
    exchanges(private_room, 3, author=alice, days=40)
    aged(private_room, days=41)
    report = apply_all(dry_run=True)["PRIVATE"]
    assert (report.messages, report.rooms_deleted) == (6, 1)
    assert seqs(private_room) == [1, 2, 3, 4, 5, 6]
    report = apply_all()["PRIVATE"]
    assert (report.messages, report.rooms_deleted) == (6, 1)


def test_batches_hold_whole_exchanges(private_room, alice):
    exchanges(private_room, 5, author=alice, days=40)
    cutoff = timezone.now() - timedelta(days=30)
    plan = room_prune_plan(room_id=private_room.pk, cutoff=cutoff, batch_size=3)
    assert [len(batch) for batch in plan.batches] == [2, 2, 2, 2, 2]
    plan = room_prune_plan(room_id=private_room.pk, cutoff=cutoff, batch_size=4)
    assert [len(batch) for batch in plan.batches] == [4, 4, 2]


def test_the_knowledge_index_is_left_alone(retention, private_room, alice):
    retention(PRIVATE=1, SHARED=1, VISITOR=1)
    KnowledgePassage.objects.create(
        source="files", document="a.md", position=0, title="A", text="x"
    )
    exchanges(private_room, 1, author=alice, days=40)
    apply_all()
    assert KnowledgePassage.objects.count() == 1
