from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from parley.exceptions import RoomPermissionDenied
from parley.realtime.auth import ticket_issue
from parley.realtime.routing import socket_path
from parley.rooms import selectors


class Command(BaseCommand):
    help = (
        "Print a WebSocket ticket (and URL) for a user in a room, for clients that carry no "
        "session cookie: scripts, bots, load generators."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("room", help="The room's public id (as in its URL) or exact title.")
        parser.add_argument("--host", default="127.0.0.1:8000")
        parser.add_argument(
            "--uses",
            type=int,
            default=1,
            help="Sockets the ticket may open (1: a replay is refused; more for load tests).",
        )

    def handle(
        self, *args: Any, username: str, room: str, host: str, uses: int, **options: Any
    ) -> None:
        user = get_user_model()._default_manager.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        rooms = [r for r in selectors.rooms_for_user(user=user) if room in (r.public_id, r.title)]
        if len(rooms) != 1:
            raise CommandError(f"{username} is a member of no single room {room!r}.")
        try:
            target = selectors.room_get_for_member(public_id=rooms[0].public_id, user=user)
        except RoomPermissionDenied as exc:
            raise CommandError(str(exc)) from exc
        if uses < 1:
            raise CommandError("--uses must be 1 or more.")
        ticket = ticket_issue(user=user, room=target.public_id, uses=uses)
        self.stdout.write(f"ws://{host}{socket_path(target.public_id)}?ticket={ticket}")
