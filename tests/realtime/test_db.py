"""parley.realtime.db.database_call: the hop from async code to the ORM."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from parley.models import Message
from parley.realtime.db import database_call

pytestmark = pytest.mark.django_db(transaction=True)  # the database thread keeps a connection

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def where() -> tuple[int, str]:
    return threading.get_ident(), request_id.get()


async def test_runs_where_database_sync_to_async_runs_with_the_callers_context():
    request_id.set("r-1")
    thread, seen = await database_call(where)
    assert thread == (await database_sync_to_async(where)())[0]
    assert thread != threading.get_ident()
    assert seen == "r-1"


async def test_arguments_results_and_errors_pass_through():
    assert await database_call(divmod, 17, 5) == (3, 2)
    assert await database_call(int, "ff", base=16) == 255
    with pytest.raises(ZeroDivisionError):
        await database_call(divmod, 1, 0)


async def test_connections_past_conn_max_age_are_closed_around_each_call():
    """As with Channels' hop, a persistent connection past its ``CONN_MAX_AGE`` is closed
    rather than used again."""

    def keep() -> None:
        connection.ensure_connection()
        connection.close_at = None  # persistent

    def expire() -> None:
        connection.ensure_connection()
        connection.close_at = time.monotonic() - 1

    def is_open() -> bool:
        return connection.connection is not None

    await database_call(keep)
    assert await database_call(is_open)
    await database_call(expire)
    assert not await database_call(is_open)


async def test_under_a_sync_caller_it_runs_in_that_callers_thread():
    """Sync code in the database thread that runs async code reaching the database (through
    ``async_to_sync``) must not wait for its own thread: the hop goes to the caller's."""

    def sync_caller() -> tuple[int, int]:
        return threading.get_ident(), async_to_sync(database_call)(where)[0]

    caller, callee = await asyncio.wait_for(database_sync_to_async(sync_caller)(), 10)
    assert caller == callee


async def test_with_debug_on_the_serving_threads_keep_no_query_log(settings):
    """DEBUG's log of every query is for pages; a server's socket work would fill it with
    thousands a second that nobody reads. A connection asked to log still logs."""
    settings.DEBUG = True

    def logged_queries() -> int:
        connection.queries_log.clear()
        list(Message.objects.all()[:1])
        return len(connection.queries_log)

    def captured_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            list(Message.objects.all()[:1])
        return len(queries)

    assert await database_call(logged_queries) == 0
    assert await database_call(captured_queries) == 1
