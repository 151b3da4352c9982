"""Flood limits for sockets: token buckets, per connection and per user.

The per-user buckets live in the server process: with several processes behind a load
balancer, a user spreading sockets over them gets up to that many times the rate. They are
kept while a user has tokens to regain, so reconnecting does not reset a limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, overload

from django.core.signals import setting_changed
from django.dispatch import receiver

from .conf import get_config
from .exceptions import RateLimited


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; each frame takes one."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "clock")

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        """Take a token if there is one."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def spend(self, amount: float) -> float:
        """Take ``amount`` tokens even if fewer are there (a debt to refill); the seconds until
        the bucket is out of debt, 0 if it is not in debt."""
        self._refill()
        self.tokens -= amount
        return max(0.0, -self.tokens / self.rate)

    def retry_after(self) -> float:
        """Seconds until a token is there."""
        self._refill()
        return max(0.0, (1.0 - self.tokens) / self.rate)

    @property
    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst


@overload
def make_bucket(limit: None) -> None: ...
@overload
def make_bucket(limit: tuple[float, float] | list[float]) -> TokenBucket: ...
def make_bucket(limit: tuple[float, float] | list[float] | None) -> TokenBucket | None:
    """A bucket for a ``(rate, burst)`` setting, or ``None`` for no limit."""
    if limit is None:
        return None
    rate, burst = limit
    return TokenBucket(rate, burst)


class UserBuckets:
    """One bucket per key (a user id, a visitor's, a client address), shared by that key's
    sockets in this process."""

    PRUNE_EVERY = 1000  # look for full (idle) buckets to drop after this many new users

    def __init__(self) -> None:
        self._buckets: dict[object, TokenBucket] = {}
        self._created = 0

    def get(
        self, user_id: object, limit: tuple[float, float] | list[float] | None
    ) -> TokenBucket | None:
        if limit is None:
            return None
        bucket = self._buckets.get(user_id)
        if bucket is None or (bucket.rate, bucket.burst) != tuple(map(float, limit)):
            self._created += 1
            if self._created % self.PRUNE_EVERY == 0:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
            bucket = self._buckets[user_id] = make_bucket(limit)
        return bucket

    def clear(self) -> None:
        self._buckets.clear()


user_buckets = UserBuckets()  # RATE_LIMITS["USER"]: messages
resume_buckets = UserBuckets()  # RATE_LIMITS["RESUME"]: history pages
feedback_buckets = UserBuckets()  # RATE_LIMITS["FEEDBACK"]: rate frames
# The pages' limits, per user: rooms created, invitations sent (RATE_LIMITS "ROOMS", "INVITES").
page_buckets = {
    action: UserBuckets() for action in ("ROOMS", "INVITES", "NEW_VISITORS", "CHAT_SESSIONS")
}


def page_limit_take(*, action: str, key: object) -> None:
    """Take one of ``key``'s tokens (a user's id, a client address) for
    ``RATE_LIMITS[action]`` (``"ROOMS"``, ``"INVITES"``, ``"NEW_VISITORS"``,
    ``"CHAT_SESSIONS"``); raise :class:`RateLimited` with the wait when none is left.
    Counted per server process, like the socket limits."""
    bucket = page_buckets[action].get(key, get_config().rate_limits[action])
    if bucket is not None and not bucket.take():
        raise RateLimited(f"Too many at once: {action.lower()}", retry_after=bucket.retry_after())


# Visitors' messages: per visitor, and per client address (RATE_LIMITS "VISITOR", "VISITOR_IP").
visitor_buckets = UserBuckets()
address_buckets = UserBuckets()


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    """New limits count from a clean slate: forget the buckets made under the old ones."""
    if setting == "PARLEY":
        user_buckets.clear()
        resume_buckets.clear()
        feedback_buckets.clear()
        visitor_buckets.clear()
        address_buckets.clear()
        for buckets in page_buckets.values():
            buckets.clear()
