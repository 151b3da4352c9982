"""The process-local fan-out (parley/hub.py) on a real in-memory channel layer."""

from __future__ import annotations

import asyncio

from channels.layers import InMemoryChannelLayer

from parley.hub import Outbox, RoomHub


class Member:
    def __init__(self) -> None:
        self.frames: list[str] = []

    def deliver(self, frame: str) -> None:
        self.frames.append(frame)


class SlowJoinLayer(InMemoryChannelLayer):
    """group_add takes a while, as a Redis round trip does."""

    async def group_add(self, group: str, channel: str) -> None:
        await asyncio.sleep(0.05)
        await super().group_add(group, channel)


async def until(condition, timeout: float = 2.0) -> None:
    """Wait for ``condition``; a TimeoutError fails the test if it never holds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_one_layer_channel_per_process_and_room():
    layer = InMemoryChannelLayer()
    hub = RoomHub(layer)
    members = [Member() for _ in range(5)]
    for token, member in enumerate(members):
        await hub.join("room.1", member, token)
    assert len(layer.groups["room.1"]) == 1  # the hub's channel, not one per member
    await layer.group_send("room.1", {"type": "parley.frame", "group": "room.1", "frame": "hi"})
    await until(lambda: all(m.frames == ["hi"] for m in members))
    for token, member in enumerate(members):
        await hub.leave("room.1", member, token)
    assert "room.1" not in layer.groups and hub.rooms == {} and hub.members == {}


async def test_a_member_joining_during_the_first_join_waits_for_the_group():
    layer = SlowJoinLayer()
    hub = RoomHub(layer)
    first, second = Member(), Member()
    await hub.join("room.2", Member(), 0)  # starts the hub
    await hub.leave("room.2", hub.members[0], 0)
    joining = asyncio.create_task(hub.join("room.2", first, 1))
    await asyncio.sleep(0.01)  # the first join is waiting on group_add
    await hub.join("room.2", second, 2)
    # When the second join returns, the process is in the group: nothing sent now is lost.
    await layer.group_send("room.2", {"type": "parley.frame", "group": "room.2", "frame": "x"})
    await joining
    await until(lambda: second.frames == ["x"] and first.frames == ["x"])


async def test_frames_for_one_member_reach_only_it():
    layer = InMemoryChannelLayer()
    hub = RoomHub(layer)
    a, b = Member(), Member()
    await hub.join("room.3", a, 1)
    await hub.join("room.3", b, 2)
    address = hub.reply_address(2)
    await layer.send(
        address["channel"], {"type": "parley.frame", "to": address["to"], "frame": "s"}
    )
    await until(lambda: b.frames == ["s"])
    assert a.frames == []


async def test_outbox_keeps_order_behind_a_blocked_write_and_caps_the_backlog():
    gate = asyncio.Event()
    written: list[int] = []
    overflows: list[int] = []

    async def send(item: int) -> None:
        if item == 1:
            await gate.wait()  # the other side pushes back
        written.append(item)

    outbox = Outbox(send, limit=3, on_overflow=lambda backlog: overflows.append(len(backlog)))
    outbox.put(0)
    assert written == [0]  # written at once, no task
    for item in (1, 2, 3, 4):
        outbox.put(item)
    assert written == [0] and outbox.backlogged
    outbox.put(5)  # a fourth item waiting: over the limit
    assert overflows == [3]
    gate.set()
    await until(lambda: not outbox.backlogged)
    assert written == [0, 1, 2, 3, 4, 5]
