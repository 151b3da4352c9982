"""How Parley is served: the one definition of its uvicorn command line, and the helpers that
start and stop such a server as a subprocess.

``manage.py parley_serve`` (``make run``), the benchmarks (bench/targets.py) and the tests
(tests/servers.py) all build their command with :func:`uvicorn_argv`, and docs/deploying.md
shows the line it builds (a test checks that it still does), so the serving choices below are
written once. See docs/deploying.md for why each flag is there.

The subprocess helpers (:func:`free_port`, :func:`server_start`, :func:`server_stop`) live here
rather than in tests/ or bench/: both need them and neither should import the other (the
benchmarks are not part of the test suite, and the tests must not depend on benchmark
scripts), and a host project that tests its own deployment against a real server can use
them too. It reads Django's settings only when the app path is left to
``ASGI_APPLICATION``, so the benchmarks can start servers that are not Parley (the original
design, the plain refserver) without setting Django up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PARLEY_HTTP = "parley.uvicorn:HttpToolsProtocol"
PARLEY_WS = "parley.uvicorn:WebSocketProtocol"

# Parley's serving choices, in order: a string is the option's value, True a bare flag.
SERVING_OPTIONS: dict[str, str | bool] = {
    "--loop": "uvloop",
    "--http": PARLEY_HTTP,
    "--ws": PARLEY_WS,
    "--ws-max-size": "65536",
    "--ws-per-message-deflate": "false",
    "--no-access-log": True,
}


def asgi_app_path() -> str:
    """``settings.ASGI_APPLICATION`` (``"mysite.asgi.application"``) as the import string uvicorn
    takes (``"mysite.asgi:application"``). Raises ImproperlyConfigured when it is not set."""
    dotted = getattr(settings, "ASGI_APPLICATION", None)
    if not dotted or "." not in dotted:
        raise ImproperlyConfigured(
            "ASGI_APPLICATION is not set: set it, or name the app (--app mysite.asgi:application)."
        )
    module, attribute = dotted.rsplit(".", 1)
    return f"{module}:{attribute}"


def uvicorn_argv(
    app: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | str = 8000,
    options: Mapping[str, str | bool | None] | None = None,
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The command that serves ``app`` (an import string, ``"mysite.asgi:application"``;
    default: ``settings.ASGI_APPLICATION``) with Parley's serving choices.

    ``options`` replaces or adds serving options by flag (``{"--ws": "websockets-sansio"}``;
    ``None`` leaves the flag out, so that uvicorn's default applies). ``extra`` comes last,
    verbatim: any uvicorn option (``--workers 4``, ``--proxy-headers``, ``--root-path /chat``),
    and one given twice takes its last value, so ``extra`` may also override.
    """
    chosen = {**SERVING_OPTIONS, **(options or {})}
    argv = [python, "-m", "uvicorn", app or asgi_app_path(), "--host", host, "--port", str(port)]
    for flag, value in chosen.items():
        if value is True:
            argv.append(flag)
        elif isinstance(value, str):
            argv += [flag, value]
    return [*argv, *extra]


def uvicorn_exec(argv: Sequence[str]) -> NoReturn:
    """Replace this process with ``argv`` (from :func:`uvicorn_argv`).

    Exec rather than ``uvicorn.run()`` in this process: the server is then exactly the
    command line docs/deploying.md shows, with nothing of this process's Django set-up in it,
    and it keeps this process's id, so that a supervisor's SIGTERM (systemd, a container
    runtime) reaches uvicorn itself and its lifespan shutdown runs.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], list(argv))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, chars: int = 4000) -> str:
    """The end of a server's log, for error messages."""
    return path.read_text(errors="replace")[-chars:]


def server_start(
    argv: Sequence[str],
    *,
    port: int,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
    name: str = "server",
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output in ``log_path`` and return once it accepts connections
    on loopback ``port``. Raises RuntimeError, with the end of the log, if it exits first or
    does not listen within ``timeout`` seconds (it is stopped then); ``name`` names it there."""
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited; see {log_path}:\n{log_tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    server_stop(proc)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout}s:\n{log_tail(log_path)}")


def server_stop(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """Send ``sig`` (SIGTERM: uvicorn's graceful shutdown) and wait for the process; kill it
    if it is still there after ``timeout`` seconds. Nothing happens if it already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
