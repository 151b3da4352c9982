#!/usr/bin/env python3
"""The workload an AI chat server carries, on one server process: many rooms with an answer
streaming in each, many people posting, sockets connecting. Targets run interleaved (the
order rotating), so a change is judged by its ratio to a baseline checkout in the same run.

- ``answers``: R rooms × M members; one member of each room asks, the R questions spread over
  one second; :class:`PacedBackend` streams every answer at a set rate (default 200 tokens at
  50 tokens/s: 4 s nominal). Every member checks its copy (offsets without a gap, the text it
  assembled equal to the stored answer and to what the backend streamed). R passes when
  nothing is wrong, every p99 delta gap ≤ ``--max-gap`` ms and the p99 duration (question to
  ``done``) ≤ ``--max-stretch`` × nominal; the sweep raises R until a target fails.
- ``post``: N clients, each in a room of its own, post for D seconds, each waiting for the
  ``ack`` of its message (sent after its row is committed) before the next: messages stored
  per second, ack latency; the rows in the database are counted against the acks.
- ``connect``: K sockets, each with a ticket of its own, opened C at a time: sockets
  connected per second (each waits for its ``hello``) and the server's CPU per socket.

The load runs in ``--procs`` client processes of their own (aiohttp on uvloop), so reading
thousands of copies does not slow the clock of the parent.

    .venv/bin/python bench/workload.py                               # SQLite, in-memory layer
    .venv/bin/python bench/workload.py --database postgres --layer redis
    git worktree add /tmp/before HEAD~1 && cp .secret_key /tmp/before/
    BENCH_BASELINE=/tmp/before .venv/bin/python bench/workload.py --baseline
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script; a server imports it as `workload` (main())
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from parley.backends.base import (  # noqa: E402
    AssistantBackend,
    AssistantRequest,
    BackendEvent,
    Finish,
    TextDelta,
)

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- the server's side


class PacedBackend(AssistantBackend):
    """Streams ``tokens`` tokens at ``rate`` a second, as a model server on another machine
    would: on a schedule fixed when the answer starts, whatever the server is doing. Token
    ``i`` of the answer to question ``q`` is ``"q.i "``, so a client knows the whole text.
    Defaults come from ``BENCH_TOKENS`` and ``BENCH_TOKEN_RATE`` (the server's environment)."""

    def __init__(self, *, tokens: int | None = None, rate: float | None = None, **options: Any):
        super().__init__(**options)
        self.tokens = tokens or int(os.environ.get("BENCH_TOKENS", "200"))
        self.rate = rate or float(os.environ.get("BENCH_TOKEN_RATE", "50"))

    async def stream(self, request: AssistantRequest) -> AsyncIterator[BackendEvent]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(self.tokens):
            delay = start + (i + 1) / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield TextDelta(expected_token(request.question, i))
        yield Finish("stop")


def expected_token(question: str, i: int) -> str:
    return f"{question}.{i} "


# --------------------------------------------------------------------------- the clients' side


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


class Client:
    """One client process: it opens its sockets, says ``ready``, waits for ``go <t0>`` on
    stdin (a CLOCK_MONOTONIC instant, system-wide), runs its part, prints its JSON result."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.errors: list[str] = []
        self.session: Any = None

    async def open(self, url: str) -> Any:
        ws = await self.session.ws_connect(
            url, headers={"Origin": origin_of(url)}, max_msg_size=0, autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2),
        )  # fmt: skip
        hello = await self.frame(ws)
        if hello is None or hello.get("type") != "hello":
            raise RuntimeError(f"no hello: {hello}")
        return ws

    async def frame(self, ws: Any) -> dict[str, Any] | None:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        frame: dict[str, Any] = json.loads(msg.data)
        return frame

    async def main(self) -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as self.session:
            mode = self.spec["mode"]
            if mode == "connect":
                return await self.connect()
            sockets = await self.open_all()
            print("ready", flush=True)
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            t0 = float(line.split()[1])
            result = await (
                self.answers(sockets, t0) if mode == "answers" else self.post(sockets, t0)
            )
            for ws in (ws for group in sockets for ws in group):
                await ws.close()
            return result

    async def open_all(self) -> list[list[Any]]:
        limit = asyncio.Semaphore(self.spec.get("concurrency", 50))

        async def one(url: str) -> Any:
            async with limit:
                return await self.open(url)

        groups = []
        for urls in self.spec["rooms"]:
            groups.append(await asyncio.gather(*(one(url) for url in urls)))
        return groups

    # -- answers

    async def answers(self, sockets: list[list[Any]], t0: float) -> dict[str, Any]:
        spec = self.spec
        deadline = t0 + 1 + spec["nominal"] * 4 + 10
        out: dict[str, Any] = {"first": [], "duration": [], "gaps": [], "done": 0, "members": 0}
        await asyncio.gather(
            *(
                self.room(group, question, t0 + at, deadline, spec["tokens"], out)
                for group, question, at in zip(
                    sockets, spec["questions"], spec["ask_at"], strict=True
                )
            )
        )
        out["errors"] = self.errors
        return out

    async def room(
        self, group: list[Any], question: str, at: float, deadline: float, tokens: int,
        out: dict[str, Any],
    ) -> None:  # fmt: skip
        asked: list[float] = []
        expected = "".join(expected_token(question, i) for i in range(tokens))

        async def ask() -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            asked.append(time.monotonic())
            frame = {"type": "send", "text": question, "ask": True, "client_id": question}
            await group[0].send_str(json.dumps(frame))

        async def member(ws: Any) -> None:
            out["members"] += 1
            text: list[str] = []
            length = 0
            answer_id = None
            first = last = None
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.errors.append(f"{question}: no done before the deadline")
                    return
                try:
                    frame = await asyncio.wait_for(self.frame(ws), remaining)
                except TimeoutError:
                    continue
                now = time.monotonic()
                if frame is None:
                    self.errors.append(f"{question}: socket closed")
                    return
                kind = frame["type"]
                if kind == "message" and frame["message"]["role"] == "assistant":
                    answer_id = frame["message"]["id"]
                elif kind == "delta" and frame["message_id"] == answer_id:
                    if frame["offset"] != length:
                        self.errors.append(f"{question}: delta at {frame['offset']}, had {length}")
                    text.append(frame["text"])
                    length += len(frame["text"])
                    if first is None:
                        first = now
                    else:
                        out["gaps"].append(round((now - last) * 1000, 2))
                    last = now
                elif kind == "done" and frame["message"]["id"] == answer_id:
                    stored = frame["message"]["text"]
                    if frame["message"]["status"] != "complete":
                        self.errors.append(f"{question}: {frame['message']['status']}")
                    elif not (stored == "".join(text) == expected):
                        self.errors.append(f"{question}: text differs ({len(stored)} chars)")
                    start = asked[0] if asked else at
                    if first is not None:
                        out["first"].append(round((first - start) * 1000, 2))
                    out["duration"].append(round((now - start) * 1000, 2))
                    out["done"] += 1
                    return
                elif kind == "error":
                    self.errors.append(f"{question}: error {frame.get('code')}")

        await asyncio.gather(ask(), *(member(ws) for ws in group))

    # -- post

    async def post(self, sockets: list[list[Any]], t0: float) -> dict[str, Any]:
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        end = t0 + self.spec["seconds"]
        latencies: list[float] = []

        async def poster(index: int, ws: Any) -> None:
            n = 0
            while time.monotonic() < end:
                client_id = f"{self.spec['tag']}-{index}-{n}"
                sent = time.monotonic()
                await ws.send_str(
                    json.dumps(
                        {"type": "send", "text": client_id, "ask": False, "client_id": client_id}
                    )
                )
                while True:
                    frame = await self.frame(ws)
                    if frame is None:
                        self.errors.append("socket closed")
                        return
                    if frame["type"] == "ack" and frame.get("client_id") == client_id:
                        latencies.append(round((time.monotonic() - sent) * 1000, 3))
                        break
                    if frame["type"] == "error":
                        self.errors.append(f"error {frame.get('code')}")
                n += 1

        await asyncio.gather(*(poster(i, group[0]) for i, group in enumerate(sockets)))
        return {"acks": latencies, "elapsed": time.monotonic() - t0, "errors": self.errors}

    # -- connect

    async def connect(self) -> dict[str, Any]:
        urls = [url for group in self.spec["rooms"] for url in group]
        limit = asyncio.Semaphore(self.spec.get("concurrency", 50))
        opened: list[Any] = []

        async def one(url: str) -> None:
            async with limit:
                try:
                    opened.append(await self.open(url))
                except Exception as exc:
                    self.errors.append(f"connect: {exc!r}")

        start = time.monotonic()
        await asyncio.gather(*(one(url) for url in urls))
        elapsed = time.monotonic() - start
        for ws in opened:
            await ws.close()
        return {"connected": len(opened), "elapsed": elapsed, "errors": self.errors}


def origin_of(url: str) -> str:
    """The page origin a browser would send for a socket URL of this server."""
    return "http" + url.removeprefix("ws").split("/ws/", 1)[0]


def client_main() -> None:
    import uvloop

    spec = json.loads(sys.stdin.readline())
    result = uvloop.run(Client(spec).main())
    Path(spec["out"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- the parent


@dataclass
class Population:
    """Users and rooms made once in the benchmark's database, reused by every run."""

    answer_rooms: list[Any]  # (room, [members]) for the answers workload
    post_rooms: list[Any]  # (room, [owner]) for posting
    connect_room: Any  # (room, [members]) for connecting


def populate(rooms: int, members: int, posters: int, connecting: int) -> Population:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from parley.models import Membership, Room

    User = get_user_model()
    password = make_password(None)
    names = [f"w{i}" for i in range(rooms * members + posters + connecting)]
    User.objects.bulk_create([User(username=name, password=password) for name in names])
    users = list(User.objects.filter(username__in=names).order_by("id"))

    def make(kind: str, owner: Any, title: str) -> Any:
        return Room(owner=owner, title=title, kind=kind)

    made = Room.objects.bulk_create(
        [make(Room.Kind.SHARED, users[i * members], f"answers {i}") for i in range(rooms)]
        + [make(Room.Kind.PRIVATE, users[rooms * members + i], f"post {i}") for i in range(posters)]
        + [make(Room.Kind.SHARED, users[rooms * members + posters], "connect")]
    )
    answer_rooms = [(made[i], users[i * members : (i + 1) * members]) for i in range(rooms)]
    post_rooms = [(made[rooms + i], [users[rooms * members + i]]) for i in range(posters)]
    connect_room = (made[-1], users[rooms * members + posters :])
    Membership.objects.bulk_create(
        [Membership(room=room, user=user) for room, group in answer_rooms for user in group]
        + [Membership(room=room, user=user) for room, group in post_rooms for user in group]
        + [Membership(room=connect_room[0], user=user) for user in connect_room[1]]
    )
    return Population(answer_rooms, post_rooms, connect_room)


@dataclass
class Deployment:
    """One target served by ``len(servers)`` processes on the same database and layer:
    members of a room are spread over them (member ``i`` on server ``i % n``), so every
    room's frames cross the layer."""

    name: str
    servers: list[Any]

    def url(self, index: int, user: Any, room: Any) -> str:
        server = self.servers[index % len(self.servers)]
        return str(server.room_url(user, room.public_id, uses=1))

    def cpu(self) -> float:
        import psutil

        return sum(sum(psutil.Process(server.proc.pid).cpu_times()[:2]) for server in self.servers)


def deployments(targets: list[Any], processes: list[int]) -> list[Deployment]:
    """Each target as a deployment of each number of processes (extra processes are copies
    of the target on ports of their own, started with it)."""
    from parley.serve import free_port

    made = []
    for target in targets:
        for n in processes:
            first = n == processes[0]
            env = dict(target.env)
            if not first and "PARLEY_LAYER_PREFIX" in env:  # a deployment's own groups
                env["PARLEY_LAYER_PREFIX"] = f"{env['PARLEY_LAYER_PREFIX']}-{n}"
            copies = [target] if first else []
            while len(copies) < n:
                copy = replace(target, port=free_port(), proc=None, log=None, env=env)
                copy.name, copy.django = f"{target.name}-{n}-{len(copies)}", target.django
                copies.append(copy)
            label = target.name if len(processes) == 1 else f"{target.name} ×{n}"
            made.append(Deployment(label, copies))
    return made


def tickets(target: Deployment, rooms: list[Any]) -> list[list[str]]:
    """A fresh single-use ticket URL for every member of every room."""
    return [[target.url(i, user, room) for i, user in enumerate(group)] for room, group in rooms]


def run_clients(target: Any, specs: list[dict[str, Any]], start_in: float = 1.0) -> list[dict]:
    """Start one client process per spec; once all are ready, tell them to go."""
    procs = []
    outs = []
    for spec in specs:
        outs.append(Path(tempfile.mkstemp(prefix="parley-workload-", suffix=".json")[1]))
        spec = {**spec, "out": str(outs[-1])}
        proc = subprocess.Popen(
            [sys.executable, __file__, "--client"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        procs.append(proc)
    if specs[0]["mode"] != "connect":
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise SystemExit(f"a client failed against {target.name}: {line!r}")
        go = time.monotonic() + start_in
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"go {go}\n")
            proc.stdin.flush()
    results = []
    for proc, out in zip(procs, outs, strict=True):
        if proc.wait(timeout=900) != 0 or not out.stat().st_size:
            raise SystemExit(f"a client failed against {target.name} (exit {proc.returncode})")
        results.append(json.loads(out.read_text()))
        out.unlink()
    return results


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def run_answers(target: Any, pop: Population, rooms: int, args: argparse.Namespace) -> dict:
    chosen = pop.answer_rooms[:rooms]
    urls = tickets(target, chosen)
    tag = uuid.uuid4().hex[:6]
    questions = [f"{tag}r{i}" for i in range(rooms)]
    ask_at = [i / rooms for i in range(rooms)]  # all within one second
    nominal = args.tokens / args.token_rate
    parts = split(list(range(rooms)), args.procs)
    specs = [
        {
            "mode": "answers",
            "rooms": [urls[i] for i in part],
            "questions": [questions[i] for i in part],
            "ask_at": [ask_at[i] for i in part],
            "tokens": args.tokens,
            "nominal": nominal,
        }
        for part in parts
    ]
    cpu = target.cpu()
    began = time.monotonic()
    results = run_clients(target, specs)
    wall = time.monotonic() - began
    cpu = target.cpu() - cpu
    merged = {
        key: [v for r in results for v in r[key]] for key in ("first", "duration", "gaps", "errors")
    }
    expected = rooms * args.members
    done = sum(r["done"] for r in results)
    gap99 = percentile(merged["gaps"], 99)
    dur99 = percentile(merged["duration"], 99)
    ok = (
        not merged["errors"]
        and done == expected
        and gap99 is not None
        and gap99 <= args.max_gap
        and dur99 is not None
        and dur99 <= args.max_stretch * nominal * 1000
    )
    return {
        "rooms": rooms,
        "members": expected,
        "done": done,
        "errors": merged["errors"][:20],
        "error_count": len(merged["errors"]),
        "gap_p50_ms": percentile(merged["gaps"], 50),
        "gap_p99_ms": gap99,
        "first_p50_ms": percentile(merged["first"], 50),
        "first_p99_ms": percentile(merged["first"], 99),
        "duration_p99_ms": dur99,
        "stretch_p99": dur99 / (nominal * 1000) if dur99 else None,
        "server_cpu_pct": 100 * cpu / wall,
        "ok": ok,
    }


def run_post(target: Any, pop: Population, args: argparse.Namespace) -> dict:
    from parley.models import Message

    chosen = pop.post_rooms[: args.posters]
    urls = tickets(target, chosen)
    tag = uuid.uuid4().hex[:6]
    parts = split(urls, args.procs)
    specs = [
        {"mode": "post", "rooms": part, "seconds": args.post_seconds, "tag": tag} for part in parts
    ]
    cpu = target.cpu()
    results = run_clients(target, specs)
    cpu = target.cpu() - cpu
    acks = [v for r in results for v in r["acks"]]
    errors = [e for r in results for e in r["errors"]]
    elapsed = max(r["elapsed"] for r in results)
    stored = Message.objects.filter(
        room__in=[room for room, _ in chosen], client_id__startswith=f"{tag}-"
    ).count()
    return {
        "clients": len(urls),
        "acks": len(acks),
        "stored": stored,
        "per_s": len(acks) / elapsed,
        "ack_p50_ms": percentile(acks, 50),
        "ack_p99_ms": percentile(acks, 99),
        "server_cpu_ms_per_msg": 1000 * cpu / max(1, len(acks)),
        "errors": errors[:20],
        "ok": not errors and stored == len(acks),
    }


def run_connect(target: Any, pop: Population, args: argparse.Namespace) -> dict:
    users = pop.connect_room[1]
    group = tickets(target, [pop.connect_room])
    specs = [
        {"mode": "connect", "rooms": [part], "concurrency": args.connect_concurrency // args.procs}
        for part in split(group[0], args.procs)
    ]
    cpu = target.cpu()
    results = run_clients(target, specs)
    cpu = target.cpu() - cpu
    connected = sum(r["connected"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    errors = [e for r in results for e in r["errors"]]
    return {
        "sockets": connected,
        "per_s": connected / elapsed,
        "server_cpu_ms_per_socket": 1000 * cpu / max(1, connected),
        "errors": errors[:20],
        "ok": not errors and connected == len(users),
    }


def rotated(targets: list[Any], step: int) -> list[Any]:
    n = step % len(targets)
    return targets[n:] + targets[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="answers,post,connect")
    parser.add_argument("--baseline", action="store_true", help="also the BENCH_BASELINE checkout")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--layer", choices=["memory", "redis"], default="memory")
    parser.add_argument("--rooms", default="50,100,200,400,600", help="the sweep of R")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--token-rate", type=float, default=50.0)
    parser.add_argument("--max-gap", type=float, default=100.0, help="ms, p99 delta gap")
    parser.add_argument("--max-stretch", type=float, default=1.25, help="p99 duration / nominal")
    parser.add_argument("--posters", type=int, default=50)
    parser.add_argument("--post-seconds", type=float, default=10.0)
    parser.add_argument("--post-rounds", type=int, default=3)
    parser.add_argument("--connect", type=int, default=1000, help="sockets per connect run")
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--connect-rounds", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--processes", default="1",
        help="server processes per target, a comma list to compare (2 or more need --layer redis)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from bench.targets import make_targets, workdir

    name = "parley-redis" if args.layer == "redis" else "parley"
    names = [name, f"{name}-baseline"] if args.baseline else [name]
    env = {
        # This checkout's backend, whichever checkout a target serves: as a top-level module.
        "PYTHONPATH": str(ROOT / "bench"),
        "PARLEY_BACKEND": "workload.PacedBackend",
        "BENCH_TOKENS": str(args.tokens),
        "BENCH_TOKEN_RATE": str(args.token_rate),
    }
    work = workdir()
    processes = [int(n) for n in args.processes.split(",")]
    targets = deployments(
        make_targets(names, work, extra_env=env, database=args.database), processes
    )
    from django.core.management import call_command

    # As `make run` does: every answer searches the docs first.
    call_command("parley_index", "--no-progress", stdout=io.StringIO())
    sweep = [int(r) for r in args.rooms.split(",")]
    workloads = args.workloads.split(",")
    print(
        f"== populating: {max(sweep)} rooms × {args.members}, {args.posters} posters, "
        f"{args.connect} connecting ({args.database}, {args.layer} layer)",
        flush=True,
    )
    pop = populate(max(sweep), args.members, args.posters, args.connect)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    servers = {id(server): server for target in targets for server in target.servers}
    for server in servers.values():
        server.start(work)
    try:
        for target in targets:  # the first answers load the knowledge index and warm up
            run_answers(target, pop, 2, args)
        if "answers" in workloads:
            print(f"== answers: R rooms × {args.members} members, {args.tokens} tokens at "
                  f"{args.token_rate:g}/s", flush=True)  # fmt: skip
            failed: set[str] = set()
            for step, rooms in enumerate(sweep):
                for target in rotated(targets, step):
                    if target.name not in failed:
                        run = record(
                            report, "answers", target, run_answers(target, pop, rooms, args)
                        )
                        if not run["ok"]:
                            failed.add(target.name)
        if "post" in workloads:
            print(f"== post: {args.posters} clients in rooms of their own, "
                  f"{args.post_seconds:g} s", flush=True)  # fmt: skip
            for step in range(args.post_rounds):
                for target in rotated(targets, step):
                    record(report, "post", target, run_post(target, pop, args))
        if "connect" in workloads:
            print(f"== connect: {args.connect} sockets, {args.connect_concurrency} at a time",
                  flush=True)  # fmt: skip
            for step in range(args.connect_rounds):
                for target in rotated(targets, step):
                    record(report, "connect", target, run_connect(target, pop, args))
    finally:
        for server in servers.values():
            server.stop()
    summarise(report, targets)
    out = args.out or ROOT / "bench" / "results" / time.strftime("workload-%Y-%m-%d-%H%M.json")
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out}")


LINES = {
    "answers": "{rooms:>4} rooms  {target:<22} gap p99 {gap_p99_ms:7.1f} ms  first p99 "
    "{first_p99_ms:7.1f} ms  stretch p99 {stretch_p99:5.2f}  done {done}/{members}  "
    "errors {error_count}  cpu {server_cpu_pct:5.1f} %  {verdict}",
    "post": "{target:<22} {per_s:8,.0f} stored/s  ack p50 {ack_p50_ms:6.2f} ms  p99 "
    "{ack_p99_ms:6.2f} ms  cpu/msg {server_cpu_ms_per_msg:.3f} ms  stored {stored}/{acks}  "
    "{verdict}",
    "connect": "{target:<22} {per_s:8,.0f} sockets/s  cpu/socket "
    "{server_cpu_ms_per_socket:.2f} ms  {verdict}",
}


def record(report: dict[str, Any], workload: str, target: Any, run: dict[str, Any]) -> dict:
    """Keep ``run`` in the report and print its line."""
    report["runs"].append({"workload": workload, "target": target.name, **run})
    shown = {key: 0 if value is None else value for key, value in run.items()}
    verdict = "ok" if run["ok"] else ("over" if workload == "answers" else "WRONG")
    print("  " + LINES[workload].format(target=target.name, verdict=verdict, **shown), flush=True)
    return run


def summarise(report: dict[str, Any], targets: list[Any]) -> None:
    print("== summary (medians of rounds)")
    for target in targets:
        runs = [r for r in report["runs"] if r["target"] == target.name]
        answers = [r["rooms"] for r in runs if r["workload"] == "answers" and r["ok"]]
        post = [r for r in runs if r["workload"] == "post"]
        connect = [r for r in runs if r["workload"] == "connect"]
        line = f"  {target.name:<22} answers: highest R {max(answers, default=0)}"
        if post:
            line += (
                f"; post {statistics.median(r['per_s'] for r in post):,.0f}/s, ack p50 "
                f"{statistics.median(r['ack_p50_ms'] for r in post):.2f} ms"
            )
        if connect:
            line += f"; connect {statistics.median(r['per_s'] for r in connect):,.0f}/s"
        print(line)


if __name__ == "__main__":
    if sys.argv[1:] == ["--client"]:
        client_main()
    else:
        main()
