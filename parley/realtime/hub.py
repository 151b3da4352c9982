"""Process-local fan-out of room frames.

Channels' usual pattern gives every socket a channel of its own and puts every socket in the
room's group, so one message to a room of N members is N layer messages, N queue hand-offs
and N task wake-ups (with channels-redis' core layer, N Redis round trips too). Here each
server process joins a room's group once, with one layer channel for the whole process, and
hands each frame to its local members itself: one layer message per process, however many
members it serves.

Frames are written to each member eagerly, without a task per delivery: a write to a socket
that can take it completes at once. Only a member whose socket pushes back (its client reads
slowly) gets a task of its own, and later frames wait in its backlog, in order, up to
``PARLEY["MAX_BACKLOG"]`` frames and ``PARLEY["MAX_BACKLOG_BYTES"]`` bytes; past either the
member is told to go (``overflow``).

The hub also listens, for the whole process, to one group every process joins
(:meth:`RoomHub.access_group`): revocations of users' rights (:mod:`parley.realtime.access`),
handed to that user's local sockets through an index of members by user.

The channel layer may fail (Redis restarting): frames sent meanwhile reach the sending
process's own members (they are handed over before the layer is asked) but are lost for the
other processes' live delivery, though every message is stored. The hub notices (a failed
send, a failed read, or its own ping not coming back), and once the layer answers again it
joins its groups again (the core layer forgets them when Redis restarts) and sends its
members a ``sync`` frame, after which clients resume from their last ``seq`` and nothing is
missing.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from .. import metrics, protocol
from ..conf import get_config
from ..contrib.channels_redis import GroupSender
from ..contrib.eager import run_eagerly
from ..exceptions import LayerUnavailable
from ..protocol import events

if TYPE_CHECKING:
    from ..models import Room
    from .access import Grant
    from .outbox import Outbox

logger = logging.getLogger(__name__)


class Member(Protocol):
    """What the hub needs of a socket, and what :mod:`.access` and ``/status/`` read."""

    grant: Grant | None  # what the socket was admitted with (set before it joins)
    outbox: Outbox  # its write queue: backlogged while its client does not read

    def deliver(self, frame: str) -> None: ...

    def on_access(self, event: dict[str, Any]) -> None:
        """A revocation event for the member's user; the member decides if it applies."""

    def revoke(self, code: str, detail: str, close_code: int) -> None:
        """Say why, and close: the socket lost its rights."""


class RoomHub:
    """One per process and event loop (see :func:`get_hub`)."""

    def __init__(self, layer: BaseChannelLayer, *, check_interval: float = 1.0) -> None:
        self.layer = layer
        # Channels' in-memory layer lives in this process and reaches nobody else: events are
        # handed to this process's members at once, without that layer's task per send, deep
        # copy and queue (and its silent drop when the queue is full).
        self.in_process = isinstance(layer, InMemoryChannelLayer)
        # The group sends of a loop turn go to the layer together (Redis: one pipeline).
        self._sender = GroupSender(layer)
        self.rooms: dict[str, set[Member]] = {}
        self.members: dict[int, Member] = {}  # token -> member, for frames to one socket
        self.users: dict[str, set[Member]] = {}  # user key -> members, for revocations
        # Groups this process listens to for events that are not frames (answers' controls).
        # Several per group for a moment: a new answer listens before the last one has gone.
        self.listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._joining: dict[str, asyncio.Event] = {}  # groups whose group_add is under way
        self.channel = ""
        self.healthy = True  # False from a layer failure until the layer answers again
        self.check_interval = check_interval
        self._stale: set[str] = set()  # groups whose frames failed to go out while unhealthy
        self._pings = 0  # pings sent to our own channel
        self._pongs = 0  # the last of them that came back
        self._ready: asyncio.Lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Reach the channel layer: the process's layer channel, and the tasks reading it and
        watching the layer. The lifespan application calls it at startup; the first join or
        listen calls it if that did not succeed. Raises :class:`LayerUnavailable`."""
        async with self._ready:
            if not self.channel:
                try:
                    self.channel = await self.layer.new_channel("parley.hub.")
                except Exception as exc:
                    raise LayerUnavailable("The channel layer cannot be reached.") from exc
                await self._group_add(self.access_group)
                self._tasks = [
                    asyncio.create_task(self._read(), name="parley-hub"),
                    asyncio.create_task(self._watch(), name="parley-hub-watch"),
                ]

    @property
    def access_group(self) -> str:
        return access_group_name()

    def user_sockets(self, user: str) -> int:
        """How many sockets of ``user`` (a user key) this process serves."""
        return len(self.users.get(user, ()))

    async def join(self, group: str, member: Member, token: int, *, user: str = "") -> None:
        """Add ``member`` (a socket of ``user``) to the room ``group``; the process joins the
        group with its first. The member counts for :meth:`user_sockets` from the moment
        this is called, before it suspends.

        Raises :class:`LayerUnavailable` only if this process never reached the layer; a
        group it cannot join now is joined when the layer returns."""
        if not self.channel:
            await self.start()
        self.members[token] = member
        if user:
            self.users.setdefault(user, set()).add(member)
        room = self.rooms.setdefault(group, set())
        first = not room
        room.add(member)
        self._count()
        if first:
            self._joining[group] = joined = asyncio.Event()
            try:
                await self._group_add(group)
            finally:
                joined.set()
                del self._joining[group]
        else:
            joining = self._joining.get(group)
            if joining is not None:  # a member joined just before us: wait for the group
                await joining.wait()

    async def follow(self, user: str, member: Member, token: int) -> None:
        """Pass the ``parley.access`` events of ``user`` (a user key) to ``member``, a socket
        in no room (the room list's: :mod:`.inbox`). It counts for :meth:`user_sockets`,
        and as one of :attr:`members` for the re-check of rights and ``/status/``."""
        if not self.channel:
            await self.start()
        self.members[token] = member
        self.users.setdefault(user, set()).add(member)
        self._count()

    async def unfollow(self, user: str, member: Member, token: int) -> None:
        self.members.pop(token, None)
        self._count()
        sockets = self.users.get(user)
        if sockets is not None:
            sockets.discard(member)
            if not sockets:
                del self.users[user]

    async def leave(self, group: str, member: Member, token: int, *, user: str = "") -> None:
        """Remove ``member``; the process leaves the group with its last."""
        await self.unfollow(user, member, token)
        room = self.rooms.get(group)
        if room is None:
            return
        room.discard(member)
        if not room:
            del self.rooms[group]
            self._count()
            await self._group_discard(group)

    def _count(self) -> None:
        """Set the gauges of this process's sockets and rooms (parley/metrics)."""
        metrics.sockets_open.set(len(self.members))
        metrics.rooms_open.set(len(self.rooms))

    async def listen(self, group: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Pass the events sent to ``group`` that are not frames to ``handler``."""
        if not self.channel:
            await self.start()
        handlers = self.listeners.setdefault(group, [])
        handlers.append(handler)
        if len(handlers) == 1:
            await self._group_add(group)

    async def unlisten(self, group: str, handler: Callable[[dict[str, Any]], None]) -> None:
        handlers = self.listeners.get(group, [])
        if handler in handlers:
            handlers.remove(handler)
            if not handlers:
                del self.listeners[group]
                await self._group_discard(group)

    async def group_send(self, group: str, event: dict[str, Any]) -> bool:
        """Send ``event`` to ``group``; ``False`` if the layer failed (it is logged, and the
        group's members are told to resync once the layer is back).

        This process's own members and listeners get it at once, not when the layer brings
        it back: the other processes read it from the layer, and this one skips its echo
        (the event names its origin). On Redis, that echo had every local member wait for a
        round trip and a second decoding of every frame."""
        self._dispatch(event)
        if self.in_process:
            return True
        try:
            await self._sender.group_send(group, {**event, "origin": self.channel})
        except Exception as exc:
            self.layer_failed(exc, group=group)
            return False
        return True

    async def send(self, channel: str, event: dict[str, Any]) -> bool:
        """Send ``event`` to one channel; ``False`` if the layer failed. A frame for one of
        this process's own members is handed to it at once, as the room's frames are (else a
        snapshot could arrive after deltas sent later); the pings of :meth:`_watch` go
        through the layer, which is what they test."""
        if channel == self.channel and (self.in_process or "frame" in event):
            self._dispatch(event)
            return True
        try:
            await self.layer.send(channel, event)
        except Exception as exc:
            self.layer_failed(exc)
            return False
        return True

    def reply_address(self, token: int) -> dict[str, Any]:
        """Where a frame for one member goes: this process's channel, and the member."""
        return {"channel": self.channel, "to": token}

    def layer_failed(self, exc: BaseException | None = None, *, group: str | None = None) -> None:
        """Note that the layer failed (``group``: a send to it was lost)."""
        if self.healthy:
            logger.warning(
                "channel layer unavailable (%s): live frames are lost until it returns; "
                "clients will resync then",
                exc or "a ping did not come back",
            )
        self.healthy = False
        if group is not None:
            self._stale.add(group)

    async def _group_add(self, group: str) -> None:
        try:
            await self.layer.group_add(group, self.channel)
        except Exception as exc:  # joined again by _recover()
            self.layer_failed(exc)

    async def _group_discard(self, group: str) -> None:
        try:
            await self.layer.group_discard(group, self.channel)
        except Exception as exc:  # the core layer's group entry expires by itself
            self.layer_failed(exc)

    async def _read(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.layer_failed(exc)
                await asyncio.sleep(self.check_interval / 4)
                continue
            if event.get("origin") != self.channel:  # our own were dispatched when sent
                self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        """Hand an event that reached this process to its members or listeners. A member
        that fails (a bug) is logged; the others still get the event, and the hub reads on."""
        frame = event.get("frame")
        if frame is None:
            self._on_event(event)
        elif "to" in event:
            member = self.members.get(event["to"])
            if member is not None:
                _call(member.deliver, frame)
                metrics.frames_delivered.inc()
        else:
            members = tuple(self.rooms.get(event.get("group", ""), ()))
            for member in members:
                _call(member.deliver, frame)
            metrics.frames_delivered.inc(len(members))

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == events.PING:
            self._pongs = max(self._pongs, event.get("n", 0))
            if not self.healthy and self._pongs == self._pings:
                self._tasks.append(asyncio.create_task(self._recover()))
            return
        if event.get("type") == events.ACCESS:
            for member in tuple(self.users.get(event.get("user", ""), ())):
                _call(member.on_access, event)
            return
        for handler in tuple(self.listeners.get(event.get("group", ""), ())):
            _call(handler, event)

    async def _watch(self) -> None:
        """Ping our own channel: every ``check_interval`` while healthy, four times as often
        after a failure, so that the layer's return is noticed within a fraction of a second.
        A ping unanswered for three intervals counts as a failure (a dead subscription)."""
        sent_at = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.check_interval if self.healthy else self.check_interval / 4)
            now = asyncio.get_running_loop().time()
            if self.healthy and self._pongs < self._pings:
                if now - sent_at < 3 * self.check_interval:
                    continue
                self.layer_failed()
            self._pings += 1
            sent_at = now
            await self.send(self.channel, {"type": events.PING, "n": self._pings})

    async def _recover(self) -> None:
        """The layer answers again: join every group again, then tell the members to resync
        (the members of other processes too, in the rooms whose frames we failed to send)."""
        self._tasks = [task for task in self._tasks if not task.done()]
        groups = [self.access_group, *self.rooms, *self.listeners]
        try:
            for group in groups:
                await self.layer.group_add(group, self.channel)
        except Exception as exc:
            self.layer_failed(exc)
            return
        self.healthy = True
        stale, self._stale = self._stale, set()
        sync = protocol.encode(protocol.sync())
        for group in stale:
            await self.group_send(group, {"type": events.FRAME, "frame": sync, "group": group})
        current = [m for group, ms in self.rooms.items() if group not in stale for m in ms]
        for member in current:
            member.deliver(sync)
        logger.info(
            "channel layer is back: joined %d group(s) again; asked %d room(s) and %d local "
            "socket(s) to resync",
            len(groups),
            len(stale),
            len(current),
        )


def _call(callback: Callable[[Any], None], argument: Any) -> None:
    """``callback(argument)`` for one member or listener, logging its failure: one socket's
    bug must not cost the others their frames, nor stop the hub's reading."""
    try:
        callback(argument)
    except Exception:
        logger.exception("a member of the hub failed to take an event")


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RoomHub] = weakref.WeakKeyDictionary()


def access_group_name() -> str:
    """The group of revocation events, which every process's hub joins."""
    return f"{get_config().group_prefix}.access"


def running_hubs() -> list[tuple[asyncio.AbstractEventLoop, RoomHub]]:
    """This process's hubs whose event loop is running (a server's; none in a shell)."""
    return [(loop, hub) for loop, hub in list(_hubs.items()) if loop.is_running()]


def get_hub() -> RoomHub:
    """This process's hub for the running event loop, on the default channel layer."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        layer = get_channel_layer()
        if layer is None:
            raise ImproperlyConfigured("Parley needs a channel layer (CHANNEL_LAYERS).")
        hub = _hubs[loop] = RoomHub(layer, check_interval=get_config().layer_check_interval)
    return hub


def broadcast_now(room: Room, frame: dict[str, Any]) -> None:
    """Start broadcasting ``frame`` before returning, for callers that must not suspend: this
    process's members have it when this returns, and its send to the layer is queued behind
    those made before it. The rest of the send goes on by itself."""
    pending = run_eagerly(broadcast(room, frame))
    if pending is not None:  # the layer's send suspended: keep it alive until it is done
        _sending.add(pending)
        pending.add_done_callback(_sending.discard)


_sending: set[asyncio.Task[Any]] = set()


async def broadcast(room: Room, frame: dict[str, Any], *, finish: bool = False) -> bool:
    """Send ``frame`` to every member of ``room``, in every process (each process's hub
    hands it to its own members). ``False`` if the channel layer failed: the members resync
    from the database once it is back, so callers need not retry.

    ``finish``: if the caller is cancelled meanwhile, the send still completes, so that the
    frame is neither lost nor sent twice. (The in-process layer's send never suspends, so
    there it costs no shielding task.)"""
    hub = get_hub()
    send = hub.group_send(room.group_name, protocol.frame_event(frame, group=room.group_name))
    if finish and not hub.in_process:
        return await asyncio.shield(send)
    return await send
