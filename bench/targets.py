"""The servers the benchmarks compare, each started as its own process on a free port.

- ``parley``: Parley as ``make run`` serves it (uvicorn with uvloop, httptools and
  parley.uvicorn; SQLite; the in-memory channel layer).
- ``parley-redis``: the same with ``REDIS_URL`` set (channels-redis' pub/sub layer).
- ``original``: the original design (bench/original: the Channels tutorial's one-group chat on
  channels-redis' core layer), on the same uvicorn.
- ``plain``: ../shared/bench/refserver.py, a plain asyncio ``websockets`` fan-out server.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
NO_RATE_LIMITS = (
    '{"CONNECTION": null, "USER": null, "RESUME": null, "BYTES": null, "SOCKETS_PER_USER": null}'
)
PARLEY_WS = "parley.uvicorn:WebSocketProtocol"
PARLEY_HTTP = "parley.uvicorn:HttpToolsProtocol"
UVICORN_FLAGS = [
    "--loop", "uvloop", "--http", PARLEY_HTTP, "--ws", PARLEY_WS,
    "--ws-max-size", "65536", "--no-access-log", "--backlog", "4096",
]  # fmt: skip
# Parley's own serving choice, as in `make run` (bench/README.md): no permessage-deflate.
PARLEY_FLAGS = ["--ws-per-message-deflate", "false"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raise_fd_limit() -> None:
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

    @property
    def template(self) -> str:
        return '{"message": "%s"}'

    def url(self) -> str:
        raise NotImplementedError

    def origin(self) -> str | None:
        return None

    def start(self, logdir: Path) -> Target:
        self.log = logdir / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [arg.replace("{port}", str(self.port)) for arg in self.command],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_raise_fd_limit,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited at start; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{self.name} did not listen within 30 s; see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

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


def prepare_parley_database(workdir: Path) -> tuple[str, Any]:
    """Create and migrate a SQLite database with a staff user in a shared room; returns its
    URL and ``(user, room)``. Sets up Django in this process, on the same database."""
    url = f"sqlite:///{workdir / 'bench.sqlite3'}"
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

    from parley import services

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench", is_staff=True)
    room = services.room_create(owner=user, title="Bench", kind="shared")
    return url, (user, room)


def make_targets(
    names: list[str], workdir: Path, extra_env: dict[str, str] | None = None
) -> list[Target]:
    """The named targets, not started yet."""
    python = sys.executable
    targets: list[Target] = []
    parley_env: dict[str, str] = {}
    django_state = None
    if any(name.startswith("parley") for name in names):
        url, django_state = prepare_parley_database(workdir)
        # One wsload sender posts hundreds of messages a second: far past the default limits.
        parley_env = {
            "DATABASE_URL": url,
            "PARLEY_RATE_LIMITS": NO_RATE_LIMITS,
            **(extra_env or {}),
        }
    uvicorn = [python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", *UVICORN_FLAGS]
    for name in names:
        if name == "plain":
            targets.append(Plain(name, [python, str(SHARED / "refserver.py"), "--port", "{port}"]))
        elif name == "original":
            env = {"REDIS_URL": REDIS_URL, "BENCH_PREFIX": f"bench-orig-{uuid.uuid4().hex[:8]}"}
            # The original design on uvicorn's own protocols, as it was measured.
            own = {PARLEY_WS: "websockets-sansio", PARLEY_HTTP: "httptools"}
            stock = [own.get(arg, arg) for arg in uvicorn]
            targets.append(Original(name, [*stock, "bench.original.asgi:application"], env))
        elif name in ("parley", "parley-redis"):
            env = dict(parley_env)
            if name == "parley-redis":
                env |= {
                    "REDIS_URL": REDIS_URL,
                    "PARLEY_LAYER_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
                }
            target = Parley(name, [*uvicorn, *PARLEY_FLAGS, "example.asgi:application"], env)
            target.django = django_state
            targets.append(target)
        else:
            raise SystemExit(f"unknown target {name!r}")
    return targets


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="parley-bench-"))
