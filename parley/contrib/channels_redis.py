"""Group sends written to Redis together: this leans on channels-redis' private internals
(``RedisPubSubChannelLayer._get_layer``, its shards, their lock and client).

channels-redis' pub/sub layer publishes each ``group_send`` under its shard's lock, one
round trip after another: a server streaming hundreds of answers waited on thousands of
round trips a second, and every delta queued behind the others (bench/README.md,
"Workload"). :class:`GroupSender` hands the layer every send of a loop turn at once, as
one pipeline per shard (one round trip), in the order they were made.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from channels.layers import BaseChannelLayer

try:
    from channels_redis.pubsub import RedisPubSubChannelLayer
except ImportError:  # the redis extra is not installed: no layer of that kind to batch for
    RedisPubSubChannelLayer = None

Send = tuple[str, dict[str, Any], "asyncio.Future[None]"]


class GroupSender:
    """The ``group_send`` of one event loop: each send waits until its event was handed to
    the layer (or raises what the layer raised); sends made while others are being written
    go together next, in order. For layers other than channels-redis' pub/sub, they are
    made one after another, in order, as ``layer.group_send`` would make them."""

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.batches = RedisPubSubChannelLayer is not None and isinstance(
            layer, RedisPubSubChannelLayer
        )
        self._waiting: list[Send] = []
        self._writer: asyncio.Task[None] | None = None

    async def group_send(self, group: str, event: dict[str, Any]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((group, event, done))
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())
        await done

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    if self.batches:
                        await _publish(self.layer, batch)
                    else:
                        for group, event, _ in batch:
                            await self.layer.group_send(group, event)
                except Exception as exc:
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._writer = None


async def _publish(layer: Any, batch: list[Send]) -> None:
    """PUBLISH every event of ``batch`` to its group's channel, as the layer's
    ``group_send`` does, in one pipeline per shard."""
    loop_layer = layer._get_layer()
    by_shard: defaultdict[Any, list[tuple[str, bytes]]] = defaultdict(list)
    for group, event, _ in batch:
        channel = loop_layer._get_group_channel_name(group)
        by_shard[loop_layer._get_shard(channel)].append((channel, layer.serialize(event)))
    for shard, messages in by_shard.items():
        async with shard._lock:
            shard._ensure_redis()
            pipeline = shard._redis.pipeline(transaction=False)
            for channel, data in messages:
                pipeline.publish(channel, data)
            await pipeline.execute()
