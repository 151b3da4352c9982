"""Every answer's tokens are recorded: as its model's server counted them, or estimated and
flagged where no counts came (a stopped answer is never free), with its cost."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from parley import answers
from parley.answers import records
from parley.backends import get_backend
from parley.checks import check_prices
from parley.models import Message, Usage
from parley.rooms import services
from parley.usage.metering import cost_of, tokens_estimate
from tests.openai_server import Script
from tests.tools import sample

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def usage_of(answer_id: int) -> Usage:
    return Usage.objects.select_related("user").get(answer_id=answer_id)


async def ask(client, text: str, client_id: str = "c1") -> dict:
    """Send ``text``; the assistant's ``done`` frame."""
    await client.send(type="send", client_id=client_id, text=text)
    return await client.expect("done", timeout=10)


async def test_the_counts_of_the_models_server_are_recorded_with_the_asker(
    settings, fake_openai, asker, alice
):
    settings.PARLEY = {
        "BACKENDS": {
            "default": {
                "BACKEND": "parley.backends.openai.OpenAIBackend",
                "OPTIONS": {
                    "base_url": fake_openai.base_url,
                    "api_key": "sk-x",
                    "model": "fake-model",
                },
            }
        },
        "USAGE": {"PRICES": {"fake-*": {"INPUT": "1", "OUTPUT": "2"}}},
    }
    try:
        done = await ask(asker, "hi")
    finally:
        await get_backend().aclose()
    usage = await usage_of(done["message"]["id"])
    # As the fake server counts (stream_options.include_usage): 10 in, one per piece out.
    tokens = len(Script().tokens)
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, tokens)
    assert not usage.estimated
    assert usage.user == alice and usage.backend == "default"
    assert usage.model == done["message"]["model"] != ""
    # Priced by the longest pattern its model's name starts with, per million tokens.
    assert usage.cost == (Decimal(10) + 2 * Decimal(tokens)) / 1_000_000


async def test_a_stopped_answer_is_estimated_and_flagged(backend, asker):
    backend(reply="word ", repeat=400, delay=0.01, usage=(123, 456))
    await asker.send(type="send", client_id="c1", text="Tell me a long story")
    await asker.expect("delta")
    await asker.send(type="cancel")
    done = await asker.expect("done", timeout=10)
    assert done["message"]["status"] == "cancelled"
    usage = await usage_of(done["message"]["id"])
    # Stopped before the counts came: estimated from what was asker and what came back.
    assert usage.estimated
    assert usage.completion_tokens == tokens_estimate(done["message"]["text"]) > 0
    assert usage.prompt_tokens >= tokens_estimate("Tell me a long story")


async def test_a_failed_answer_is_estimated_too(backend, asker):
    backend(reply="half an answer", fail_after=2)
    done = await ask(asker, "Will it break?")
    assert done["message"]["status"] == "failed"
    usage = await usage_of(done["message"]["id"])
    assert usage.estimated and usage.prompt_tokens > 0


async def test_the_offline_assistant_costs_nothing_even_stopped(settings, asker):
    offline = {"BACKEND": "parley.backends.offline.OfflineBackend", "OPTIONS": {"delay": 0.05}}
    settings.PARLEY = {"BACKENDS": {"default": offline}}
    await asker.send(type="send", client_id="c1", text="what can you do?")
    await asker.expect("delta")
    await asker.send(type="cancel")
    done = await asker.expect("done", timeout=10)
    usage = await usage_of(done["message"]["id"])
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (0, 0, False)
    assert usage.cost is None  # no price for it


async def test_a_dead_processs_answer_is_estimated_when_it_is_closed(backend, asker, private_room):
    done = await ask(asker, "first")

    @database_sync_to_async
    def dead_answer() -> Message:
        answer = Message.objects.get(pk=done["message"]["id"])
        Usage.objects.filter(answer=answer).delete()
        Message.objects.filter(pk=answer.pk).update(
            status=Message.Status.STREAMING, updated_at=timezone.now() - timedelta(hours=1)
        )
        [closed] = records.answers_mark_stale(room=private_room)
        return closed

    closed = await dead_answer()
    usage = await usage_of(closed.pk)
    assert usage.estimated
    assert usage.completion_tokens == tokens_estimate(closed.text) > 0


def test_a_price_is_per_million_tokens_and_a_model_without_one_has_no_cost(settings):
    settings.PARLEY = {
        "USAGE": {
            "PRICES": {
                "gpt-4o": {"INPUT": "2.5", "OUTPUT": "10"},
                "gpt-4o*": {"INPUT": "9", "OUTPUT": "9"},
                "gpt-4o-mini*": {"INPUT": "0.15", "OUTPUT": "0.6"},
            }
        }
    }
    assert cost_of(model="gpt-4o", prompt_tokens=1_000_000, completion_tokens=0) == Decimal("2.5")
    mini = cost_of(model="gpt-4o-mini-2024-07-18", prompt_tokens=2000, completion_tokens=1000)
    assert mini == Decimal("0.000900")
    assert cost_of(model="llama3", prompt_tokens=10, completion_tokens=10) is None


async def test_an_answer_that_pauses_for_approval_adds_up_its_rounds(settings, fake_openai, asker):
    settings.PARLEY = {"BACKENDS": {"default": sample.offering(fake_openai.base_url, "pin")}}
    fake_openai.enqueue(
        Script(tokens=["I will pin it."], tool_calls=[("pin", '{"text": "standup at 9"}')]),
        Script(tokens=["Pinned ", "for the ", "team."]),
    )
    try:
        await asker.send(type="send", client_id="c1", text="Pin the standup time")
        step = await asker.expect("tool")
        while step["step"]["status"] != "pending":
            step = await asker.expect("tool")
        # Paused: the first request's counts are stored with its calls, nothing runs it.
        paused = await usage_of(step["message_id"])
        assert (paused.prompt_tokens, paused.completion_tokens) == (10, 1)
        await asker.send(type="decide", step=step["step"]["id"], approve=True)
        done = await asker.expect("done", timeout=10)
    finally:
        await get_backend().aclose()
    usage = await usage_of(done["message"]["id"])
    # Each request as the fake server counts it: 10 in, a token per piece of text out.
    assert (usage.prompt_tokens, usage.completion_tokens) == (20, 1 + 3)
    assert not usage.estimated


async def test_asking_again_for_an_answer_is_charged_to_who_asked(
    backend, connect, shared_room, alice, bob
):
    backend(reply="An answer.", usage=(30, 3))
    asker = await connect(shared_room, alice)
    await asker.expect("hello")
    other = await connect(shared_room, bob)
    await other.expect("hello")
    first = await ask(asker, "hi")
    await other.send(type="regenerate", message_id=first["message"]["id"])
    again = await other.expect("done", timeout=10)
    while again["message"]["id"] == first["message"]["id"]:  # the first answer's, seen too
        again = await other.expect("done", timeout=10)
    await answers.answers_shutdown()
    assert (await usage_of(first["message"]["id"])).user == alice
    assert (await usage_of(again["message"]["id"])).user == bob


async def test_a_request_refused_before_any_reply_costs_nothing(settings, asker):
    settings.PARLEY = {
        "BACKENDS": {
            "default": {
                "BACKEND": "parley.backends.openai.OpenAIBackend",
                # Nothing listens there: the request fails before the model reads anything.
                "OPTIONS": {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x", "timeout": 2},
            }
        }
    }
    try:
        done = await ask(asker, "hi")
    finally:
        await get_backend().aclose()
    assert done["message"]["status"] == "failed"
    assert not await Usage.objects.filter(answer_id=done["message"]["id"]).aexists()


def test_a_dead_answer_is_closed_and_estimated_once_whoever_watches(alice, private_room):
    question, _ = services.message_post(room=private_room, author=alice, text="a question")
    answer, _ = records.answer_open(room=private_room, reply_to=question, worker="gone")
    Message.objects.filter(pk=answer.pk).update(
        text="half of it", updated_at=timezone.now() - timedelta(hours=1)
    )
    # Two processes' watches both found it stale: the first closes it, the second finds it
    # closed already (as when they run at once).
    assert [m.pk for m in records.answers_mark_stale(room=private_room)] == [answer.pk]
    assert records.answers_mark_stale(room=private_room) == []
    [usage] = Usage.objects.filter(answer=answer)
    assert usage.completion_tokens == tokens_estimate("half of it")


def test_prices_that_cannot_be_read_are_a_system_error(settings):
    settings.PARLEY = {"USAGE": {"PRICES": {"a": {"INPUT": "0.15 USD"}, "b": "1", "c*": {}}}}
    assert [(e.id, e.msg.split(" ")[0]) for e in check_prices()] == [
        ("parley.E007", "USAGE['PRICES']['a']['INPUT']"),
        ("parley.E007", "USAGE['PRICES']['b']"),
    ]
