from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate

from .search.schema import search_schema_ensure


class ParleyConfig(AppConfig):
    name = "parley"
    verbose_name = "Parley"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, once the models are loaded, for what importing them does: register
        # the system checks, and connect the receivers that reset the settings, that revoke
        # sockets, that nudge room lists, that keep registered models' passages in step with
        # their objects, and that stop a deleted user's answers; and the handlers of
        # features' own frames (feedback).
        from . import checks, conf  # noqa: F401
        from .feedback import handlers  # noqa: F401
        from .knowledge import signals  # noqa: F401
        from .realtime import access, inbox  # noqa: F401
        from .retention import signals as retention_signals  # noqa: F401
        from .visitors import signals as visitor_signals  # noqa: F401

        # SQLite's triggers of the search index, put back where a migration dropped them.
        post_migrate.connect(search_schema_ensure, sender=self)
