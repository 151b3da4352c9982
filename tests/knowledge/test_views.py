"""The page of a knowledge document, where the assistant's source links lead."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def url(key: str) -> str:
    return reverse("parley:knowledge", kwargs={"key": key})


def test_an_indexed_document_is_rendered_with_heading_anchors(indexed, client, alice):
    client.force_login(alice)
    response = client.get(url("kb/backends.md"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<title>Assistant backends · Parley</title>" in body
    assert '<h2 id="openai-compatible-servers">OpenAI-compatible servers</h2>' in body
    assert "<code>http://127.0.0.1:11434/v1</code>" in body
    assert "default-src 'self'" in response["Content-Security-Policy"]


def test_markup_in_a_document_is_escaped(
    knowledge_settings, knowledge_folder, reindex, client, alice
):
    (knowledge_folder / "evil.md").write_text(
        "# Evil\n\n<script>alert(1)</script> <img src=x onerror=alert(1)>\n\n"
        "[click](javascript:alert(1))\n"
    )
    reindex()
    client.force_login(alice)
    body = client.get(url("kb/evil.md")).content.decode()
    assert "<script>alert" not in body and "<img" not in body
    assert 'href="javascript' not in body
    assert "&lt;script&gt;" in body


def test_only_indexed_documents_are_served_to_logged_in_users(indexed, client, alice):
    assert client.get(url("kb/backends.md"))["Location"].startswith(reverse("login"))
    client.force_login(alice)
    for key in ("kb/missing.md", "kb/logo.png", "kb/.hidden/secret.md", "../settings.py"):
        assert client.get(url(key)).status_code == 404
