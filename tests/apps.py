"""The tests as a Django app, so that server subprocesses can register knowledge at start-up
(``AppConfig.ready``), as a host project does."""

from __future__ import annotations

import os

from django.apps import AppConfig

VAULT = "Vault"


def vault_register():
    """Register the user messages of rooms titled :data:`VAULT` as knowledge that only their
    author may read (``owner="author"``), titled "Vault note <seq>"."""
    from parley import knowledge
    from parley.models import Message

    return knowledge.register(
        Message,
        fields=["text"],
        title=lambda m: f"Vault note {m.seq}",
        url=lambda m: f"/vault/{m.seq}",
        owner="author",
        queryset=Message.objects.filter(room__title=VAULT, role=Message.Role.USER),
    )


class TestsConfig(AppConfig):
    name = "tests"
    label = "parley_tests"

    def ready(self) -> None:
        # PARLEY_TEST_VAULT=1: a server subprocess that knows the vault's registration.
        if os.environ.get("PARLEY_TEST_VAULT"):
            vault_register()
