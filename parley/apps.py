from __future__ import annotations

from django.apps import AppConfig


class ParleyConfig(AppConfig):
    name = "parley"
    verbose_name = "Parley"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the checks, the settings signal and the receivers that revoke sockets.
        from . import access, checks, conf  # noqa: F401
