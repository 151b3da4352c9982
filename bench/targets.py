"""The servers the benchmarks compare, each started as its own process on a free port
(parley.serve's server_start and server_stop, which the tests use too).

- ``parley``: Parley as ``make run`` serves it (parley.serve.uvicorn_argv: uvicorn with
  uvloop, httptools and parley.uvicorn; SQLite; the in-memory channel layer).
- ``parley-redis``: the same with ``REDIS_URL`` set (channels-redis' pub/sub layer).
- ``original``: the original design (bench/original: the Channels tutorial's one-group chat on
  channels-redis' core layer), on the same uvicorn with its stock protocols and
  permessage-deflate.
- ``plain``: ../shared/bench/refserver.py, a plain asyncio ``websockets`` fan-out server.
- ``parley-baseline`` (and ``parley-redis-baseline``): ``parley`` (``parley-redis``) served from
  another checkout, named by ``BENCH_BASELINE`` (a path), on the same database, for a same-run
  A/B of a change: ``git worktree add /tmp/before <commit>``, then
  ``BENCH_BASELINE=/tmp/before python bench/fanout.py --targets parley,parley-baseline``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parley.serve import free_port, server_start, server_stop, uvicorn_argv

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
NO_RATE_LIMITS = (
    '{"CONNECTION": null, "USER": null, "RESUME": null, "BYTES": null, "SOCKETS_PER_USER": null}'
)
# Over `make run`'s flags, for every uvicorn target: a load step opens thousands of sockets at
# once, past the listen queue's default 2048.
BENCH_FLAGS = ["--backlog", "4096"]
# The original design as it was measured: uvicorn's own protocols, permessage-deflate on (its
# default), on Parley's loop and limits otherwise.
STOCK_OPTIONS: dict[str, str | bool | None] = {
    "--http": "httptools",
    "--ws": "websockets-sansio",
    "--ws-per-message-deflate": None,
}


def _raise_fd_limit() -> None:
    """As many descriptors as allowed, for this process and the servers it starts (children
    inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Target:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    cwd: Path = ROOT  # the checkout whose code the server runs

    @property
    def template(self) -> str:
        return '{"message": "%s"}'

    def url(self) -> str:
        raise NotImplementedError

    def origin(self) -> str | None:
        return None

    def start(self, logdir: Path) -> Target:
        self.log = logdir / f"{self.name}.log"
        _raise_fd_limit()
        self.proc = server_start(
            [arg.replace("{port}", str(self.port)) for arg in self.command],
            port=self.port,
            log_path=self.log,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            name=self.name,
        )
        return self

    def stop(self) -> None:
        server_stop(self.proc)

    def leftover_members(self) -> int | None:
        """Group members the server still holds for the room (after every client left)."""
        return None


class Plain(Target):
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


class Original(Target):
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/"

    def leftover_members(self) -> int | None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            return int(client.zcard(f"{self.env['BENCH_PREFIX']}:group:chat"))
        finally:
            client.close()


class Parley(Target):
    """Parley on a database of its own with a demo room; clients join with tickets."""

    django: Any = None
    cookie: str | None = None

    @property
    def template(self) -> str:
        return '{"type": "send", "text": "%s", "ask": false}'

    def origin(self) -> str | None:
        return f"http://127.0.0.1:{self.port}"

    def url(self) -> str:
        user, room = self.django
        return self.room_url(user, room.public_id)

    def room_url(self, user: Any, room: str, uses: int = 100_000) -> str:
        """A socket URL with a fresh ticket for ``user`` in the room with public id ``room``,
        good for ``uses`` sockets: wsload opens all its clients with one URL. Synchronous:
        it writes the ticket's row."""
        from parley.auth import ticket_issue

        ticket = ticket_issue(user=user, room=room, uses=uses)
        return f"ws://127.0.0.1:{self.port}/ws/rooms/{room}/?ticket={ticket}"

    def status(self) -> dict[str, Any]:
        import json
        import urllib.request

        from parley.testing import session_cookie

        if self.cookie is None:  # one staff session, however often the page is read
            self.cookie = session_cookie(self.django[0])
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/status/", headers={"Cookie": self.cookie}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def leftover_members(self) -> int | None:
        return sum(self.status()["rooms"].values())


def prepare_parley_database(workdir: Path, database: str = "sqlite") -> tuple[str, Any]:
    """Create and migrate a database (``"sqlite"``: a file in ``workdir``; ``"postgres"``: a
    database of its own on the machine's server, dropped when this process ends) with a
    staff user in a shared room; returns its URL and
    ``(user, room)``. Sets up Django in this process, on the same database."""
    url = (
        postgres_database() if database == "postgres" else f"sqlite:///{workdir / 'bench.sqlite3'}"
    )
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    # As `make run` (the example project defaults to DEBUG off, which needs a SECRET_KEY);
    # the servers started later inherit it.
    os.environ.setdefault("DEBUG", "true")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from parley.rooms import services

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench", is_staff=True)
    room = services.room_create(owner=user, title="Bench", kind="shared")
    return url, (user, room)


def postgres_database() -> str:
    """A new database on ``BENCH_POSTGRES_URL``'s server (the machine's, by default), dropped
    at exit; its URL."""
    import atexit

    import psycopg

    server = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = f"parley_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    atexit.register(drop)
    return server.rsplit("/", 1)[0] + f"/{name}"


def make_targets(
    names: list[str],
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    database: str = "sqlite",
) -> list[Target]:
    """The named targets, not started yet (Parley's on a ``database`` of
    :func:`prepare_parley_database`)."""
    python = sys.executable
    targets: list[Target] = []
    parley_env: dict[str, str] = {}
    django_state = None
    if any(name.startswith("parley") for name in names):
        url, django_state = prepare_parley_database(workdir, database)
        # One wsload sender posts hundreds of messages a second: far past the default limits.
        parley_env = {
            "DATABASE_URL": url,
            "PARLEY_RATE_LIMITS": NO_RATE_LIMITS,
            **(extra_env or {}),
        }
    for name in names:
        if name == "plain":
            targets.append(Plain(name, [python, str(SHARED / "refserver.py"), "--port", "{port}"]))
        elif name == "original":
            env = {"REDIS_URL": REDIS_URL, "BENCH_PREFIX": f"bench-orig-{uuid.uuid4().hex[:8]}"}
            command = uvicorn_argv(
                "bench.original.asgi:application",
                port="{port}",
                options=STOCK_OPTIONS,
                extra=BENCH_FLAGS,
            )
            targets.append(Original(name, command, env))
        elif name.removesuffix("-baseline") in ("parley", "parley-redis"):
            env = dict(parley_env)
            if name.startswith("parley-redis"):
                env |= {
                    "REDIS_URL": REDIS_URL,
                    "PARLEY_LAYER_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
                }
            command = uvicorn_argv("example.asgi:application", port="{port}", extra=BENCH_FLAGS)
            target = Parley(name, command, env)
            target.django = django_state
            if name.endswith("-baseline"):
                target.cwd = baseline_checkout()
            targets.append(target)
        else:
            raise SystemExit(f"unknown target {name!r}")
    return targets


def baseline_checkout() -> Path:
    """The checkout named by ``BENCH_BASELINE``, for the ``-baseline`` targets."""
    path = Path(os.environ.get("BENCH_BASELINE", ""))
    if not os.environ.get("BENCH_BASELINE") or not (path / "parley").is_dir():
        raise SystemExit("the -baseline targets need BENCH_BASELINE=<another checkout of Parley>")
    return path.resolve()


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="parley-bench-"))
