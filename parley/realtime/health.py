"""Whether this process can serve: for load balancers, orchestrators and supervisors
(``/healthz``, ``/readyz``; docs/operations.md).

Live is "the event loop answers": nothing is checked, so that a database outage does not
get every process restarted at once. Ready is "a member would be served": the database
answers a query on the thread every socket's writes go through, and the channel layer takes
a publish, each within ``READY_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from django.db import connection

from ..conf import get_config
from ..exceptions import LayerUnavailable
from .db import database_call
from .hub import get_hub

logger = logging.getLogger(__name__)

READY_EVENT = "parley.ready"  # published to a group no one joins: it tests the publish


async def readiness() -> tuple[bool, dict[str, str]]:
    """Whether this process is ready, and each check's outcome (``"ok"``, or why not)."""
    timeout = get_config().ready_timeout
    checks = {
        "database": await _check("database", database_call(_database_ping), timeout),
        "channel_layer": await _check("channel layer", _layer_ping(), timeout),
    }
    return all(outcome == "ok" for outcome in checks.values()), checks


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _layer_ping() -> None:
    hub = get_hub()
    if not hub.healthy:
        raise LayerUnavailable("its own pings go unanswered")
    group = f"{get_config().group_prefix}.ready"
    if not await hub.group_send(group, {"type": READY_EVENT}):
        raise LayerUnavailable("a publish failed")


async def _check(name: str, probe: Awaitable[None], timeout: float) -> str:
    try:
        await asyncio.wait_for(probe, timeout)
    except TimeoutError:
        logger.warning("not ready: the %s did not answer within %g s", name, timeout)
        return f"no answer within {timeout:g} s"
    except Exception as exc:
        logger.warning("not ready: the %s failed: %s", name, exc)
        return f"failed: {exc}" if isinstance(exc, LayerUnavailable) else "failed"
    return "ok"
