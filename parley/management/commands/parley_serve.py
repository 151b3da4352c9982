"""``manage.py parley_serve``: run uvicorn with Parley's serving choices (parley.serve)."""

from __future__ import annotations

import os
import shlex
import tempfile
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from parley.serve import uvicorn_argv, uvicorn_exec


class Command(BaseCommand):
    help = (
        "Serve the project on uvicorn with Parley's protocols and limits. Options for uvicorn "
        "itself follow a '--': manage.py parley_serve --port 8000 -- --workers 4 --proxy-headers"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--app",
            help="The ASGI application's import string (default: ASGI_APPLICATION, "
            "'mysite.asgi.application' given as 'mysite.asgi:application').",
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--print",
            action="store_true",
            help="Print the uvicorn command line instead of running it (for a systemd unit, "
            "a container's command, a supervisor).",
        )
        parser.add_argument("uvicorn_args", nargs="*", help="More uvicorn options, after '--'.")

    def handle(
        self,
        *args: Any,
        app: str | None,
        host: str,
        port: int,
        uvicorn_args: list[str],
        **options: Any,
    ) -> None:
        # argparse keeps the '--' itself in some Python versions and drops it in others.
        extra = uvicorn_args[1:] if uvicorn_args[:1] == ["--"] else uvicorn_args
        argv = uvicorn_argv(app, host=host, port=port, extra=extra)
        if options["print"]:
            self.stdout.write(shlex.join(argv))
            return
        # Every worker writes its metrics there and a scrape adds them up (parley/metrics):
        # a directory of this run's own, unless the deployment names one.
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="parley-metrics-")
        )
        uvicorn_exec(argv)
