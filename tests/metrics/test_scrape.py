"""/metrics as Prometheus scrapes it: real HTTP requests to a uvicorn server of two worker
processes (``--workers 2``, prometheus-client's multiprocess mode), driven by real sockets."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import Peer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.server]

TOKEN = "scrape-token-of-the-test"


def scrape(server, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"Host": "127.0.0.1", "Connection": "close"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{server.http_url}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in found.items() if n == name and wanted <= got)


async def until_sockets(server, count: int, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, text = await asyncio.to_thread(scrape, server)
        assert code == 200, text
        found = samples(text)
        if value(found, "parley_sockets_open") == count:
            return found
        assert time.monotonic() < deadline, f"sockets open: {value(found, 'parley_sockets_open')}"
        await asyncio.sleep(0.2)


async def test_a_scrape_of_any_worker_counts_every_worker(
    servers, tmp_path, alice, bob, private_room, shared_room
):
    options = {"reply": "tok ", "repeat": 5, "delay": 0.01, "usage": [12, 5]}
    backend = {"BACKEND": "parley.backends.scripted.ScriptedBackend", "OPTIONS": options}
    server = servers(
        {
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
            "PARLEY_TEST_BACKEND": json.dumps(backend),
            "PARLEY_TEST_OPTIONS": json.dumps({"METRICS_TOKEN": TOKEN}),
        },
        name="metrics",
        args=("--workers", "2"),
    )
    for refused in (None, "a wrong token"):
        code, _ = await asyncio.to_thread(scrape, server, refused)
        assert code == 401

    asker = await Peer.connect(server, private_room, alice)
    peers = [asker, *[await Peer.connect(server, shared_room, bob) for _ in range(3)]]
    await asker.send(type="send", client_id="q1", text="how are you?")
    done = await asker.expect(lambda f: f["type"] == "done", timeout=20)
    assert done["message"]["status"] == "complete"

    # Each scrape is a new connection, answered by either worker: all say the same.
    for _ in range(8):
        found = await until_sockets(server, 4)
        # The shared room counts once on each worker it has sockets on.
        assert value(found, "parley_rooms_open") in (2, 3)
        assert value(found, "parley_answers_total", outcome="complete") == 1
        assert value(found, "parley_answer_duration_seconds_count", outcome="complete") == 1
        assert value(found, "parley_answer_first_delta_seconds_count") == 1
        operation = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "parley"}
        assert value(found, "gen_ai_client_operation_duration_seconds_count",
                     error_type="", **operation) == 1  # fmt: skip
        assert value(found, "gen_ai_client_operation_time_to_first_chunk_seconds_count") == 1
        assert value(found, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 12
        assert value(found, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 5
        # The question and the answer's frames, to the asker alone in its room.
        assert value(found, "parley_frames_delivered_total") >= 3

    # A worker killed with its sockets open: uvicorn starts another, and the scrape counts
    # the live ones' sockets only, while the counters keep what the dead one counted.
    children = psutil.Process(server.proc.pid).children()
    workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2
    workers[0].send_signal(signal.SIGKILL)
    for peer in peers:
        await peer.close()
    found = await until_sockets(server, 0, timeout=20)
    assert value(found, "parley_rooms_open") == 0
    assert value(found, "parley_answers_total", outcome="complete") == 1


async def test_errors_and_closes_by_code(servers, tmp_path, alice, private_room):
    options = {"METRICS_TOKEN": TOKEN, "RATE_LIMITS": {"CONNECTION": [0.001, 2], "STRIKES": 1}}
    server = servers(
        {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PARLEY_TEST_OPTIONS": json.dumps(options)},
        name="metrics-errors",
    )
    peer = await Peer.connect(server, private_room, alice)
    await peer.ws.send("{not json")
    await peer.expect(lambda f: f["type"] == "error" and f["code"] == "bad_json")
    for _ in range(4):  # past the limit, then past its strikes: closed with 4029
        await peer.ws.send("{}")
    await peer.expect(lambda f: f["type"] == "error" and f["code"] == "rate_limited")
    await asyncio.wait_for(peer.reader, 10)
    assert peer.ws.close_code == 4029
    _, text = await asyncio.to_thread(scrape, server)
    found = samples(text)
    assert value(found, "parley_error_frames_total", code="bad_json") == 1
    assert value(found, "parley_error_frames_total", code="rate_limited") >= 2
    assert value(found, "parley_sockets_closed_total", code="4029") == 1
