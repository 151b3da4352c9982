"""``manage.py parley_visitors_expire``: delete visitors' conversations that have expired.

Run it daily from cron (docs/embedding.md), for example::

    17 4 * * * cd /srv/site && .venv/bin/python manage.py parley_visitors_expire
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from parley.conf import get_config
from parley.visitors.services import visitors_expire


class Command(BaseCommand):
    help = (
        "Delete the visitors (and their conversations) not seen for VISITORS['EXPIRE_AFTER'] "
        "seconds, and those who have logged in since."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        days = get_config().visitors["EXPIRE_AFTER"] / 86400
        deleted = visitors_expire()
        self.stdout.write(f"Deleted {deleted} visitor(s) not seen for {days:g} days or logged in.")
