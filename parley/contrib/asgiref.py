"""asgiref's private executors: where ``sync_to_async(thread_sensitive=True)`` runs code.

:func:`parley.realtime.db.database_call` makes asgiref's hop to its one sync thread without
asgiref's per-call wrapper; it needs to know which thread that is, and when a caller already
has a thread of its own in asgiref's eyes. Neither is public API (asgiref 3.x).
"""

from __future__ import annotations

from concurrent.futures import Executor

from asgiref.sync import AsyncToSync, SyncToAsync


def in_own_sync_thread() -> bool:
    """Whether the caller runs under ``async_to_sync`` or inside a thread-sensitive context
    (a Django request): then asgiref gives its sync code a thread other than the shared one."""
    return (
        getattr(AsyncToSync.executors, "current", None) is not None
        or SyncToAsync.thread_sensitive_context.get(None) is not None
    )


def sync_thread_executor() -> Executor:
    """asgiref's executor of the one thread shared by thread-sensitive sync code."""
    executor: Executor = SyncToAsync.single_thread_executor
    return executor
