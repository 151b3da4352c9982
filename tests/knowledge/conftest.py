"""Fixtures of the knowledge tests: documents in a temporary folder, indexed."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command


def a_reader():
    """A logged-in user with no permissions, for ranking tests (a visitor reads nothing)."""
    return get_user_model()(pk=10**9, username="reader")


BACKENDS = """# Assistant backends

A backend is a small class with one async streaming method.

## OpenAI-compatible servers

To connect Ollama, which listens on `http://127.0.0.1:11434/v1`, set `OPENAI_BASE_URL`
to it and `PARLEY_BACKEND=openai`, then restart the server.

## The offline backend

It quotes the documents and needs no model.
"""

DEPLOYING = """# Deploying

## Behind nginx

Pass the `Upgrade` and `Connection` headers through for WebSockets, and raise
`proxy_read_timeout`.

## Database

PostgreSQL is the production database; SQLite serves one process.
"""

NOTES = """Plain notes about the coffee machine.

Descale the coffee machine every month with citric acid.
"""


@pytest.fixture
def knowledge_folder(tmp_path: Path) -> Path:
    """A folder ``kb`` holding two Markdown documents (one in a subfolder), a text file and
    files that are not documents."""
    folder = tmp_path / "kb"
    (folder / "guides").mkdir(parents=True)
    (folder / "backends.md").write_text(BACKENDS)
    (folder / "guides" / "deploying.md").write_text(DEPLOYING)
    (folder / "notes.txt").write_text(NOTES)
    (folder / "logo.png").write_bytes(b"\x89PNG")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "secret.md").write_text("# Secret\n\nNever indexed.")
    return folder


@pytest.fixture
def knowledge_settings(settings, knowledge_folder: Path):
    """``PARLEY["KNOWLEDGE"]`` pointing at :func:`knowledge_folder`."""
    knowledge = {**settings.PARLEY.get("KNOWLEDGE", {}), "FOLDERS": [str(knowledge_folder)]}
    settings.PARLEY = {**settings.PARLEY, "KNOWLEDGE": knowledge}
    return settings


@pytest.fixture
def reindex(db):
    """Run ``parley_index``; returns what it printed."""

    def run() -> str:
        out = StringIO()
        call_command("parley_index", "--no-progress", stdout=out, stderr=StringIO())
        return out.getvalue()

    return run


@pytest.fixture
def indexed(knowledge_settings, reindex) -> str:
    """The knowledge folder, indexed; the command's output."""
    return reindex()


@pytest.fixture
def register_messages():
    """Register Parley's own ``Message`` model as knowledge (its text; titled by room and
    number) with the given options; unregistered after the test."""
    from parley import knowledge
    from parley.models import Message

    def register(**options):
        options = {
            "fields": ["text"],
            "title": lambda m: f"{m.room.title} #{m.seq}",
            "url": lambda m: f"/rooms/{m.room.public_id}/#m{m.seq}",
            **options,
        }
        return knowledge.register(Message, **options)

    yield register
    knowledge.unregister(Message)
