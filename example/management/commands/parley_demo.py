"""``manage.py parley_demo``: demo users and rooms to try Parley with (safe to run again).

Users are created once and never changed afterwards: running it again (every ``make run``)
must not reset a password, which would also end every session of that user.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.urls import NoReverseMatch, reverse

from parley.models import Room
from parley.rooms import selectors, services

PASSWORD = "demo-pass-123"


class Command(BaseCommand):
    help = "Create the demo users (demo, guest) and their rooms; prints how to log in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the site is served, for the printed links.",
        )

    def handle(self, *args: Any, base_url: str, **options: Any) -> None:
        with transaction.atomic():
            demo, demo_created = self._user("demo")
            guest, guest_created = self._user("guest")
            private = self._room(owner=demo, title="Private notes", kind=Room.Kind.PRIVATE)
            shared = self._room(owner=demo, title="Team room", kind=Room.Kind.SHARED)
            if not selectors.room_is_member(room=shared, user=guest):
                services.room_member_add(room=shared, user=guest, by=demo)

        base = base_url.rstrip("/")
        self.stdout.write(self.style.SUCCESS("Parley demo ready."))
        for username, created in (("demo", demo_created), ("guest", guest_created)):
            if created:
                self.stdout.write(f"  Created user {username} with the password {PASSWORD}")
            else:
                self.stdout.write(f"  User {username} existed already: left as it was")
        for room in (private, shared):
            self.stdout.write(f"  {room.title}: {base}{self._path(room)}")

    def _user(self, username: str) -> tuple[Any, bool]:
        """The user named ``username`` and whether it was created now, with the demo
        password; an existing one is not touched."""
        model = get_user_model()
        manager = model._default_manager
        user = manager.filter(**{model.USERNAME_FIELD: username}).first()  # active or not
        if user is not None:
            return user, False
        return manager.create_user(username=username, password=PASSWORD), True

    def _room(self, *, owner: Any, title: str, kind: str) -> Room:
        for room in selectors.rooms_for_user(user=owner):
            if room.owner_id == owner.pk and room.title == title and room.kind == kind:
                return room
        return services.room_create(owner=owner, title=title, kind=kind)

    def _path(self, room: Room) -> str:
        try:
            return reverse("parley:room", kwargs={"public_id": room.public_id})
        except NoReverseMatch:
            return f"/rooms/{room.public_id}/"
