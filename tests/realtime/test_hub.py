"""The process-local fan-out (parley/hub.py): on a real in-memory channel layer, and between
real server processes on a Redis of the test's own that is killed and started again."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer

from parley.realtime.consumers import _text_size
from parley.realtime.hub import RoomHub
from parley.realtime.outbox import Outbox
from tests.servers import Peer, scripted_backend


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


async def test_on_the_in_memory_layer_frames_reach_members_without_the_layer():
    """The in-memory layer reaches no other process: the hub hands frames and control events
    to this process's members and listeners at once, in order, without queueing them."""
    layer = InMemoryChannelLayer()
    hub = RoomHub(layer)
    members = [Member() for _ in range(3)]
    for token, member in enumerate(members):
        await hub.join("room.9", member, token)
    heard: list[dict] = []
    await hub.listen("control.9", heard.append)
    for n in range(3):
        assert await hub.group_send("room.9", {"type": "parley.frame", "group": "room.9",
                                               "frame": f"f{n}"})  # fmt: skip
    assert await hub.group_send("control.9", {"type": "parley.cancel", "group": "control.9"})
    assert all(m.frames == ["f0", "f1", "f2"] for m in members)
    assert [event["type"] for event in heard] == ["parley.cancel"]
    assert not any(queue.qsize() for queue in layer.channels.values())
    address = hub.reply_address(1)
    await hub.send(address["channel"], {"type": "parley.frame", "to": 1, "frame": "only"})
    assert members[1].frames[-1] == "only" and members[0].frames[-1] == "f2"


async def test_whether_the_layer_is_in_process_is_named_apart_from_the_rooms_members():
    """``in_process`` says the layer reaches only this process; ``rooms`` holds each room's
    members here (once both were called ``local``)."""
    hub = RoomHub(InMemoryChannelLayer())
    assert hub.in_process is True
    member = Member()
    await hub.join("room.3", member, 1)
    assert hub.rooms == {"room.3": {member}}
    await hub.leave("room.3", member, 1)
    assert hub.rooms == {}


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


class BrokenMember(Member):
    def deliver(self, frame: str) -> None:
        raise RuntimeError("a bug in one socket")


async def test_a_failing_member_costs_the_others_nothing_and_the_hub_reads_on():
    layer = InMemoryChannelLayer()
    hub = RoomHub(layer)
    broken, member = BrokenMember(), Member()
    await hub.join("room.4", broken, 1)
    await hub.join("room.4", member, 2)
    for frame in ("one", "two"):
        await layer.group_send(
            "room.4", {"type": "parley.frame", "group": "room.4", "frame": frame}
        )
    await until(lambda: member.frames == ["one", "two"])
    assert not any(task.done() for task in hub._tasks)  # still reading the layer


async def test_a_close_queued_behind_a_blocked_frame_is_written_after_it():
    """A socket revoked while a write to it waits queues its error frame and then its close
    (the close holds no text to count)."""
    gate = asyncio.Event()
    written: list[dict] = []

    async def send(item: dict) -> None:
        if item.get("text") == "big page":
            await gate.wait()
        written.append(item)

    outbox = Outbox(send, limit=10, max_bytes=10**6, size=_text_size, on_overflow=print)
    outbox.put({"type": "websocket.send", "text": "big page"})
    await asyncio.sleep(0.01)
    outbox.put({"type": "websocket.send", "text": "forbidden"})
    outbox.put({"type": "websocket.close", "code": 4403})
    gate.set()
    await until(lambda: not outbox.backlogged)
    assert [item.get("text", item.get("code")) for item in written] == [
        "big page",
        "forbidden",
        4403,
    ]


async def test_outbox_keeps_order_behind_a_blocked_write_and_caps_the_backlog():
    gate = asyncio.Event()
    written: list[int] = []
    overflows: list[int] = []

    async def send(item: int) -> None:
        if item == 1:
            await gate.wait()  # the other side pushes back
        written.append(item)

    errors: list[Exception] = []
    outbox = Outbox(
        send,
        limit=3,
        on_overflow=lambda backlog: overflows.append(len(backlog)),
        on_error=errors.append,
    )
    outbox.put(0)
    assert written == [0]  # written at once, no task
    outbox.put(1)
    await asyncio.sleep(0.01)  # its writer task now waits on the blocked write
    for item in (2, 3, 4):
        outbox.put(item)
    assert written == [0] and outbox.backlogged
    outbox.put(5)  # a fourth item waiting: over the limit
    assert overflows == [3]
    gate.set()
    await until(lambda: not outbox.backlogged)
    assert written == [0, 1, 2, 3, 4, 5]
    assert errors == []


async def test_outbox_caps_the_bytes_waiting_the_blocked_write_included():
    gate = asyncio.Event()
    written: list[str] = []
    overflows: list[list[str]] = []

    async def send(item: str) -> None:
        if item == "a" * 40:
            await gate.wait()
        written.append(item)

    outbox = Outbox(
        send, limit=1000, max_bytes=100, size=len, on_overflow=lambda b: overflows.append([*b])
    )
    outbox.put("a" * 40)  # blocks: 40 bytes held
    await asyncio.sleep(0.01)
    outbox.put("b" * 30)
    outbox.put("c" * 30)  # 100 bytes: at the bound, not past it
    assert overflows == []
    outbox.put("d")  # 101
    assert overflows == [["b" * 30, "c" * 30]]
    gate.set()
    await until(lambda: not outbox.backlogged)
    assert written == ["a" * 40, "b" * 30, "c" * 30, "d"]
    outbox.put("e" * 100)  # nothing waits any more: the count went back to 0
    assert overflows == [["b" * 30, "c" * 30]] and written[-1] == "e" * 100


def is_type(kind: str, **fields):
    return lambda f: f["type"] == kind and all(f.get(k) == v for k, v in fields.items())


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layer", ["pubsub", "core"])
async def test_redis_restart_loses_nothing_and_the_rooms_work_again(
    servers, redis_server, layer, alice, bob, shared_room
):
    """Redis is killed while an answer streams between two server processes and both members
    post; when it returns, each member is told to resync and gets everything it missed, the
    answer ends complete everywhere, and new messages reach the other process live again."""
    env = {
        "REDIS_URL": redis_server.url,
        "PARLEY_LAYER_PREFIX": "restart",
        "PARLEY_TEST_LAYER": layer,
        **scripted_backend(repeat=250, delay=0.02),  # a 5-second answer
    }
    one, two = servers(env, name="one"), servers(env, name="two")
    a = await Peer.connect(one, shared_room, alice)
    b = await Peer.connect(two, shared_room, bob)
    await a.send(type="send", client_id="q", text="a long answer please", ask=True)
    answer = await b.answer_started()
    await b.expect(is_type("delta", message_id=answer["id"]))

    redis_server.stop()
    during = {a: ["a0", "a1", "a2"], b: ["b0"]}
    for peer, client_ids in during.items():
        for client_id in client_ids:
            await peer.send(type="send", client_id=client_id, text=f"sent {client_id}", ask=False)
            ack = await peer.expect(is_type("ack", client_id=client_id))
            assert ack["message"]["seq"] > answer["seq"]  # stored, though nobody else saw it
    await asyncio.sleep(1.0)
    redis_server.start()
    back = time.monotonic()

    resync_seconds = []
    final: dict[Peer, dict] = {}
    for peer, missed in ((b, {"sent a0", "sent a1", "sent a2"}), (a, {"sent b0"})):
        await peer.expect(is_type("sync"))
        # What the browser client does on sync: resume from before the answer it holds as
        # streaming (RoomState.resumePoint).
        await peer.send(type="resume", after=answer["seq"] - 1)
        history = await peer.expect(is_type("history"))
        resync_seconds.append(time.monotonic() - back)
        assert missed <= {m["text"] for m in history["messages"]}
        copy = next(m for m in history["messages"] if m["id"] == answer["id"])
        if copy["status"] != "streaming":  # it ended while Redis was away
            final[peer] = copy

    await a.send(type="send", client_id="after", text="back to normal", ask=False)
    live = await b.expect(
        lambda f: f["type"] == "message" and f["message"]["text"] == "back to normal"
    )
    assert live["message"]["author"]["name"] == "alice"

    for peer in (a, b):
        if peer not in final:
            final[peer] = (await peer.expect(is_type("done"), timeout=30))["message"]
        assert final[peer]["id"] == answer["id"]
        assert (final[peer]["status"], final[peer]["text"]) == ("complete", "tok " * 250)

    stored = await sync_to_async(list)(shared_room.messages.order_by("seq"))
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
    texts = [m.text for m in stored]
    for text in (
        "a long answer please",
        "sent a0",
        "sent a1",
        "sent a2",
        "sent b0",
        "back to normal",
    ):
        assert texts.count(text) == 1
    print(f"{layer}: resynced {max(resync_seconds):.2f} s after Redis returned")


@pytest.fixture
def redis_layer(redis_url):
    """A channels-redis pub/sub layer on a prefix of its own: as each server process has."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    prefix = f"parley-test-{time.monotonic_ns()}"
    return lambda: RedisPubSubChannelLayer(hosts=[redis_url], prefix=prefix)


async def test_group_sends_made_at_once_reach_another_process_all_and_in_order(redis_layer):
    """The sends of a loop turn go to Redis together (one pipeline), in the order made."""
    sender, receiver = RoomHub(redis_layer()), RoomHub(redis_layer())
    member = Member()
    await receiver.join("room.1", member, 1)
    await sender.start()
    try:
        frames = [f"frame {n}" for n in range(300)]
        sent = await asyncio.gather(
            *(
                sender.group_send("room.1", {"type": "parley.frame", "group": "room.1", "frame": f})
                for f in frames
            )
        )
        assert sent == [True] * 300
        await until(lambda: len(member.frames) == 300, timeout=5)
        assert member.frames == frames
    finally:
        await receiver.leave("room.1", member, 1)
        await sender.layer.flush()
        await receiver.layer.flush()


async def test_group_sends_to_a_redis_that_is_gone_fail_each_and_are_noticed(redis_server):
    from channels_redis.pubsub import RedisPubSubChannelLayer

    hub = RoomHub(RedisPubSubChannelLayer(hosts=[redis_server.url], prefix="parley-gone"))
    await hub.start()
    redis_server.stop()
    try:
        event = {"type": "parley.frame", "group": "room.1", "frame": "lost"}
        sent = await asyncio.gather(*(hub.group_send("room.1", event) for _ in range(20)))
        assert sent == [False] * 20
        assert not hub.healthy and "room.1" in hub._stale  # its members resync once it is back
    finally:
        redis_server.start()
        await hub.layer.flush()


async def test_a_processs_own_members_get_its_frames_at_once_and_once(redis_layer):
    """A process's own members do not wait for the layer to bring back what it sent (nor
    get it twice); the other processes' members get it from the layer."""
    here, there = RoomHub(redis_layer()), RoomHub(redis_layer())
    local, remote = Member(), Member()
    await here.join("room.1", local, 1)
    await there.join("room.1", remote, 2)
    try:
        frames = [f"frame {n}" for n in range(50)]
        for frame in frames:
            event = {"type": "parley.frame", "group": "room.1", "frame": frame}
            sending = asyncio.ensure_future(here.group_send("room.1", event))
            await asyncio.sleep(0)  # the send has begun, and not reached Redis yet
            assert local.frames[-1] == frame
            assert await sending
        await until(lambda: len(remote.frames) == 50, timeout=5)
        await asyncio.sleep(0.2)  # the echoes of our own sends came back by now
        assert local.frames == frames and remote.frames == frames
    finally:
        await here.leave("room.1", local, 1)
        await there.leave("room.1", remote, 2)
        await here.layer.flush()
        await there.layer.flush()
