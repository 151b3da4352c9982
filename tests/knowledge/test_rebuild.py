"""Rebuilding the in-memory index happens off the database thread: while a rebuild runs, the
database thread that every socket's message posts wait for stays free."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from example.asgi import application
from parley import answers
from parley.knowledge import index as knowledge_index
from parley.realtime.db import database_call
from parley.testing import RoomClient

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_rebuild_does_not_hold_the_database_thread(
    settings, knowledge_settings, reindex, alice, private_room, monkeypatch
):
    settings.PARLEY = {
        **settings.PARLEY,
        "BACKENDS": {"default": {"BACKEND": "parley.backends.offline.OfflineBackend"}},
    }
    await sync_to_async(reindex)()  # a new version: the next search rebuilds
    building, release = threading.Event(), threading.Event()
    builders: list[threading.Thread] = []

    class HeldIndex(knowledge_index.KnowledgeIndex):
        def __init__(self, **kwargs):
            builders.append(threading.current_thread())
            building.set()
            release.wait(30)
            super().__init__(**kwargs)

    monkeypatch.setattr(knowledge_index, "KnowledgeIndex", HeldIndex)
    client = await RoomClient.connect(application, private_room, alice)
    await client.expect("hello")
    try:
        await client.send(type="send", text="How often should I descale the coffee machine?")
        assert await asyncio.to_thread(building.wait, 10), "no rebuild started"
        # The rebuild is held: a database call must still get through. The wait only
        # turns a deadlock on the old code into a failure; it measures nothing.
        database_thread = await asyncio.wait_for(database_call(threading.current_thread), 10)
        assert not release.is_set()
        assert builders[0] is not database_thread
    finally:
        release.set()
    answer = await client.expect("done", timeout=10)
    assert "every month with citric acid" in answer["message"]["text"]
    await answers.answers_shutdown()
    await client.disconnect()
