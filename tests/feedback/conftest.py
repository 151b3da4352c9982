"""Fixtures of the feedback tests: the offline assistant answering from one indexed
document (so that answers have sources), visitors on, and answers made without a model."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

FERRY = "The ferry to the island leaves at nine from the north pier."
TRAVEL = f"# Travel\n\n## The ferry\n\n{FERRY}\n"
QUESTION = "When does the ferry to the island leave?"
OFFLINE = {"BACKEND": "parley.backends.offline.OfflineBackend", "OPTIONS": {"delay": 0}}


@pytest.fixture
def knowledge_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "travel.md").write_text(TRAVEL)
    return folder


@pytest.fixture
def offline(settings, knowledge_folder: Path, transactional_db):
    """The offline backend, answering from travel.md (indexed), with visitors allowed (and
    allowed to read it)."""
    settings.PARLEY = {
        **settings.PARLEY,
        "BACKENDS": {"default": OFFLINE},
        "KNOWLEDGE": {**settings.PARLEY["KNOWLEDGE"], "FOLDERS": [str(knowledge_folder)]},
        "VISITORS": {"ENABLED": True, "KNOWLEDGE": True},
        "STREAM_FLUSH_INTERVAL": 0.01,
    }
    call_command("parley_index", "--no-progress", stdout=StringIO(), stderr=StringIO())
    return settings
