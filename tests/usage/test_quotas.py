"""Quotas: taken before the model is called, refused with the time they renew, given back
when a question gets no answer; whose quota applies to whom."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.utils import timezone

from parley import answers
from parley.exceptions import QuotaExceeded
from parley.models import Message, Quota, QuotaTally
from parley.usage.quotas import period_bounds, quota_take, quotas_for

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def questions_of(user) -> int:
    return Message.objects.filter(author=user, role=Message.Role.USER).count()


@database_sync_to_async
def tally_of(quota: Quota) -> QuotaTally:
    return QuotaTally.objects.get(quota=quota)


@pytest.fixture(autouse=True)
def noted(backend):
    """Answers at once by the scripted backend, each of 40 + 10 tokens."""
    backend(reply="Noted: {question}", usage=(40, 10))


async def ask(client, client_id: str) -> dict:
    """The ``done`` of the answer to a question, or the error frame that refused it."""
    await client.send(type="send", client_id=client_id, text=f"question {client_id}")
    while True:
        frame = await client.receive(timeout=10)
        if frame["type"] == "done" or (
            frame["type"] == "error" and frame.get("client_id") == client_id
        ):
            return frame


async def test_a_spent_quota_refuses_the_question_before_it_is_stored(asker, alice):
    quota = await Quota.objects.acreate(user=alice, period=Quota.Period.DAY, max_answers=2)
    assert (await ask(asker, "q1"))["type"] == "done"
    assert (await ask(asker, "q2"))["type"] == "done"
    refused = await ask(asker, "q3")
    assert refused["code"] == "quota_exceeded"
    assert "2 answers" in refused["detail"] and "per day" in refused["detail"]
    renews = datetime.fromisoformat(refused["renews_at"])
    assert renews == period_bounds(Quota.Period.DAY, timezone.now())[1]
    assert renews > timezone.now()
    assert await questions_of(alice) == 2  # nothing stored, nothing asked of the model
    assert (await tally_of(quota)).answers == 2


async def test_tokens_are_counted_as_answers_record_them(asker, alice):
    # Each answer uses 40 + 10 tokens: the third starts with 100 used, the fourth cannot.
    quota = await Quota.objects.acreate(user=alice, period=Quota.Period.MONTH, max_tokens=120)
    for client_id in ("q1", "q2", "q3"):
        assert (await ask(asker, client_id))["type"] == "done"
    refused = await ask(asker, "q4")
    assert refused["code"] == "quota_exceeded" and "120 tokens" in refused["detail"]
    tally = await tally_of(quota)
    assert (tally.answers, tally.tokens) == (3, 150)
    assert datetime.fromisoformat(refused["renews_at"]).day == 1


async def test_a_resend_and_a_withdrawn_question_give_their_answer_back(
    connect, backend, private_room, alice
):
    backend(reply="word ", repeat=300, delay=0.01)
    quota = await Quota.objects.acreate(user=alice, max_answers=5)
    client = await connect(private_room, alice)
    await client.expect("hello")
    await client.send(type="send", client_id="long", text="a long one")
    await client.expect("delta")
    await client.send(type="send", client_id="long", text="a long one")  # the resend
    await client.expect("ack", client_id="long", duplicate=True)
    await client.send(type="send", client_id="next", text="and then?")
    waiting = await client.expect("ack", client_id="next")
    assert (await tally_of(quota)).answers == 2
    await client.send(type="withdraw", message_id=waiting["message"]["id"])
    await client.expect("message")
    await client.send(type="cancel")
    await client.expect("done", timeout=10)
    assert (await tally_of(quota)).answers == 1
    await answers.answers_shutdown()


async def test_asking_again_for_an_answer_takes_one_too(asker, alice):
    await Quota.objects.acreate(user=alice, max_answers=1)
    done = await ask(asker, "q1")
    await asker.send(type="regenerate", message_id=done["message"]["id"])
    refused = await asker.expect("error")
    assert refused["code"] == "quota_exceeded" and refused["message_id"] == done["message"]["id"]


def test_own_quotas_replace_the_groups_which_replace_everyones(alice, bob, make_user):
    everyone = Quota.objects.create(max_answers=5)
    staff = Group.objects.create(name="staff")
    bob.groups.add(staff)
    of_staff = Quota.objects.create(group=staff, max_answers=50)
    of_staff_monthly = Quota.objects.create(group=staff, period=Quota.Period.MONTH, max_tokens=9)
    exempt = Quota.objects.create(user=alice)  # no limits: alice is exempt
    alice.groups.add(staff)
    carol = make_user("carol")
    assert quotas_for(carol) == [everyone]
    assert quotas_for(None) == [everyone]  # visitors
    assert set(quotas_for(bob)) == {of_staff, of_staff_monthly}
    assert quotas_for(alice) == [exempt]
    for _ in range(10):
        quota_take(user=alice, visitor_id=None)  # exempt: nothing counted
    assert not QuotaTally.objects.filter(subject=f"user:{alice.pk}").exists()


def test_a_quota_renews_with_its_period_and_every_quota_must_hold(alice, private_room):
    daily = Quota.objects.create(user=alice, max_answers=1)
    Quota.objects.create(user=alice, period=Quota.Period.MONTH, max_answers=2)
    day = timezone.make_aware(datetime(2026, 3, 20, 15, 0))
    quota_take(user=alice, visitor_id=None, now=day)
    with pytest.raises(QuotaExceeded) as refused:
        quota_take(user=alice, visitor_id=None, now=day + timedelta(hours=2))
    assert refused.value.renews_at == timezone.make_aware(datetime(2026, 3, 21))
    quota_take(user=alice, visitor_id=None, now=day + timedelta(days=1))
    # The month's two are spent: the refusal names the month, and takes nothing of the day.
    with pytest.raises(QuotaExceeded) as refused:
        quota_take(user=alice, visitor_id=None, now=day + timedelta(days=2))
    assert refused.value.renews_at == timezone.make_aware(datetime(2026, 4, 1))
    assert not QuotaTally.objects.filter(quota=daily, period_start__day=22, answers__gt=0)


def test_a_visitors_questions_count_against_everyones_quota(make_user):
    Quota.objects.create(max_answers=1)
    quota_take(user=None, visitor_id=7)
    quota_take(user=None, visitor_id=8)  # another visitor: a tally of its own
    with pytest.raises(QuotaExceeded):
        quota_take(user=None, visitor_id=7)
