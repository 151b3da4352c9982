from __future__ import annotations

from django.apps import AppConfig


class ParleyConfig(AppConfig):
    name = "parley"
    verbose_name = "Parley"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, once the models are loaded, for what importing them does: register
        # the system checks, and connect the receivers that reset the settings, that revoke
        # sockets, that nudge room lists, that keep registered models' passages in step with
        # their objects, and that stop a deleted user's answers.
        from . import checks, conf  # noqa: F401
        from .knowledge import signals  # noqa: F401
        from .realtime import access, inbox  # noqa: F401
        from .retention import signals as retention_signals  # noqa: F401
        from .visitors import signals as visitor_signals  # noqa: F401
