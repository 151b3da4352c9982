"""/healthz and /readyz, as a load balancer or Kubernetes reads them: real HTTP requests to
a uvicorn server process on a Redis of the test's own, which is stopped and started again."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.server]


def get(server, path: str) -> tuple[int, dict, str]:
    request = urllib.request.Request(f"{server.http_url}{path}", headers={"Host": "127.0.0.1"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers["Cache-Control"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers["Cache-Control"]


async def until(server, path: str, status: int, timeout: float = 15.0) -> dict:
    """The body of ``path`` once it answers ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        code, body, _ = await asyncio.to_thread(get, server, path)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"{path} still answers {code}: {body}"
        await asyncio.sleep(0.2)


async def test_ready_follows_the_channel_layer_while_live_stays_up(servers, redis_server):
    options = {"READY_TIMEOUT": 1.0, "LAYER_CHECK_INTERVAL": 0.2}
    server = servers(
        {
            "REDIS_URL": redis_server.url,
            "PARLEY_LAYER_PREFIX": "health",
            "PARLEY_TEST_OPTIONS": json.dumps(options),
        },
        name="health",
    )
    assert await asyncio.to_thread(get, server, "/healthz") == (200, {"status": "ok"}, "no-store")
    code, body, cache = await asyncio.to_thread(get, server, "/readyz")
    assert (code, body, cache) == (
        200, {"status": "ok", "database": "ok", "channel_layer": "ok"}, "no-store",
    )  # fmt: skip

    head = urllib.request.Request(f"{server.http_url}/readyz", method="HEAD")
    with await asyncio.to_thread(urllib.request.urlopen, head, timeout=10) as response:
        assert response.status == 200  # as some balancers probe

    redis_server.stop()
    down = await until(server, "/readyz", 503)
    assert down["status"] == "unavailable" and down["database"] == "ok"
    assert down["channel_layer"].startswith(("failed", "no answer"))
    assert (await asyncio.to_thread(get, server, "/healthz"))[0] == 200  # alive: do not restart

    redis_server.start()
    assert (await until(server, "/readyz", 200))["channel_layer"] == "ok"
