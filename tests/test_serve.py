"""The launcher (parley.serve, ``manage.py parley_serve``): the one definition of how Parley is
served, which ``make run``, the benchmarks, the tests' servers and docs/deploying.md share."""

from __future__ import annotations

import io
import re
import shlex
import sys

import psutil
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from parley.serve import server_start, server_stop, uvicorn_argv
from tests.servers import ROOT, Peer, Server

PARLEYS_FLAGS = [
    "--loop", "uvloop",
    "--http", "parley.uvicorn:HttpToolsProtocol",
    "--ws", "parley.uvicorn:WebSocketProtocol",
    "--ws-max-size", "65536",
    "--ws-per-message-deflate", "false",
    "--no-access-log",
]  # fmt: skip


def test_the_command_holds_exactly_parleys_serving_flags():
    assert uvicorn_argv("mysite.asgi:application", host="0.0.0.0", port=9000) == [
        sys.executable, "-m", "uvicorn", "mysite.asgi:application",
        "--host", "0.0.0.0", "--port", "9000", *PARLEYS_FLAGS,
    ]  # fmt: skip


@override_settings(ASGI_APPLICATION="mysite.asgi.application")
def test_the_application_defaults_to_asgi_application():
    assert uvicorn_argv()[3] == "mysite.asgi:application"


@override_settings()
def test_no_asgi_application_and_no_app_is_refused_with_what_to_do():
    from django.conf import settings

    del settings.ASGI_APPLICATION
    with pytest.raises(ImproperlyConfigured, match="--app"):
        uvicorn_argv()


def test_options_replace_parleys_and_extra_options_come_last():
    """The benchmarks' original design: uvicorn's own protocols and its deflate default."""
    argv = uvicorn_argv(
        "bench.original.asgi:application",
        options={
            "--http": "httptools",
            "--ws": "websockets-sansio",
            "--ws-per-message-deflate": None,
        },
        extra=["--backlog", "4096"],
    )
    assert argv[4:] == [
        "--host", "127.0.0.1", "--port", "8000", "--loop", "uvloop", "--http", "httptools",
        "--ws", "websockets-sansio", "--ws-max-size", "65536", "--no-access-log",
        "--backlog", "4096",
    ]  # fmt: skip


def printed(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("parley_serve", "--print", *args, stdout=out)
    return shlex.split(out.getvalue())


@override_settings(ASGI_APPLICATION="mysite.asgi.application")
def test_parley_serve_passes_uvicorns_own_options_through_after_parleys():
    assert printed("--port", "8001", "--", "--workers", "4", "--root-path", "/chat") == (
        uvicorn_argv("mysite.asgi:application", port=8001)
        + ["--workers", "4", "--root-path", "/chat"]
    )
    assert printed("--app", "other.asgi:app")[3] == "other.asgi:app"


def test_the_docs_show_the_launcher_and_the_command_it_runs():
    """docs/deploying.md gives both lines: they must not drift from the code or each other."""
    text = (ROOT / "docs" / "deploying.md").read_text()
    blocks = [b.replace("\\\n", " ") for b in re.findall(r"```sh\n(.*?)```", text, re.S)]
    launcher = next(shlex.split(b) for b in blocks if "manage.py parley_serve" in b)
    uvicorn = next(shlex.split(b) for b in blocks if "-m uvicorn" in b)
    assert launcher[:3] == ["python", "manage.py", "parley_serve"]
    with override_settings(ASGI_APPLICATION="mysite.asgi.application"):
        assert printed(*launcher[3:])[1:] == uvicorn[1:]
    assert uvicorn == uvicorn_argv(
        "mysite.asgi:application", python="python", extra=["--workers", "4"]
    )


def test_the_serving_flags_are_written_nowhere_else():
    """make run, the benchmarks and the tests' servers build the command through parley.serve."""
    for path in [ROOT / "Makefile", ROOT / "tests" / "servers.py", *ROOT.glob("bench/*.py")]:
        assert "parley.uvicorn:WebSocketProtocol" not in path.read_text(), path
    assert "manage.py parley_serve" in (ROOT / "Makefile").read_text()


@pytest.fixture
def launched(transactional_db):
    """A server started as a host project would: ``manage.py parley_serve --port …``."""
    server = Server(name="parley-serve")
    launcher = [sys.executable, "manage.py", "parley_serve", "--port", str(server.port)]
    server.proc = server_start(
        launcher, port=server.port, log_path=server.log_path, env=server.env, cwd=ROOT
    )
    yield server
    server_stop(server.proc)


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
async def test_a_server_started_by_parley_serve_serves_a_room(launched, alice, bob, shared_room):
    """``parley_serve`` becomes (exec, same process) exactly the uvicorn command, which
    serves a room's socket: a message from one member reaches the other."""
    assert launched.proc is not None
    assert psutil.Process(launched.proc.pid).cmdline() == uvicorn_argv(port=launched.port)
    a = await Peer.connect(launched, shared_room, alice)
    b = await Peer.connect(launched, shared_room, bob)
    await a.send(type="send", client_id="c1", text="hello through parley_serve", ask=False)
    seen = await b.expect(lambda f: f["type"] == "message" and f["message"]["role"] == "user")
    assert seen["message"]["text"] == "hello through parley_serve"
    await a.close()
    await b.close()
