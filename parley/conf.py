"""Parley's settings: one ``PARLEY`` dict in the project's settings, merged over defaults.

Read through :func:`get_config`, never at import time, so ``override_settings`` works.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class ParleyConfig:
    """The settings, each with its default: the one place defaults are written (``DEFAULTS``
    is derived from it). ``PARLEY`` names each field in upper case."""

    # Aliases of assistant backends, like CACHES: {"default": {"BACKEND": path, "OPTIONS": {}}}.
    backends: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "default": {"BACKEND": "parley.backends.offline.OfflineBackend", "OPTIONS": {}},
        }
    )
    # How often coalesced assistant deltas are flushed to the room (the first goes out at once).
    stream_flush_interval: float = 0.04
    # How often a streaming answer's Markdown is rendered to HTML and sent with its delta (a
    # parse of the block being written; text between renders shows as it comes).
    stream_render_interval: float = 0.2
    # How often the text of a streaming answer is written to the database (its heartbeat).
    stream_persist_interval: float = 1.0
    # A streaming answer with no heartbeat for this long is marked interrupted: its process
    # died. Keep it well above STREAM_PERSIST_INTERVAL.
    answer_stale_after: float = 15.0
    # Questions that may wait in one room for the answer before them to end (its queue);
    # one more is stored without an answer and its poster told `queue_full`.
    max_waiting_questions: int = 5
    # How many earlier messages of the room the assistant sees as context.
    context_messages: int = 20
    # Largest text frame accepted from a client, in bytes; larger frames get an error frame.
    max_frame_bytes: int = 32 * 1024
    # Longest message text, in characters.
    max_message_chars: int = 8000
    # Frames waiting for a client that reads slowly; past this it is disconnected (4008).
    max_backlog: int = 1000
    # The same in bytes (the memory the waiting frames' text holds): frames are not all small.
    max_backlog_bytes: int = 4 * 1024 * 1024
    # Messages per history page sent in answer to a resume frame.
    history_page_size: int = 200
    # Bytes of message text per history page (estimated; a page holds at least one message).
    history_page_bytes: int = 256 * 1024
    # HTTP (parley.uvicorn:HttpToolsProtocol): most bytes of a request's line and headers
    # (past it: 431 and close), and seconds for them to arrive (past it: close).
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 15.0
    # How long a websocket ticket (?ticket=...) stays valid, in seconds.
    ticket_max_age: int = 300
    # How often each process re-checks the rights of its open sockets (membership, active
    # user, session, password), in seconds: the safety net under the revocations pushed when
    # they change (docs/security.md). None turns it off.
    recheck_interval: float | None = 60.0
    # Where the host's websocket router mounts ``parley.routing.websocket_urlpatterns``: "/"
    # for URLRouter(websocket_urlpatterns), "/chat/" for path("chat/", URLRouter(...)).
    # Pages and the widget reverse the room socket's address under it.
    socket_prefix: str = "/"
    # Group name prefix on the channel layer.
    group_prefix: str = "parley"
    # Origins besides the site's own (and CSRF_TRUSTED_ORIGINS) whose pages may open room
    # sockets: "https://app.example.com", or "https://*.example.com" for subdomains.
    allowed_origins: list[str] = field(default_factory=list)
    # Origins of other sites whose pages may embed the chat (<parley-chat>): its endpoint
    # answers them (CORS, never with the site's cookies) and their sockets are admitted with
    # a visitor's ticket only, never as a logged-in user.
    embed_origins: list[str] = field(default_factory=list)
    # A bearer token that may read /metrics besides staff (docs/operations.md); None: staff.
    metrics_token: str | None = None
    # Seconds /readyz waits for the database and the channel layer, each (docs/operations.md).
    ready_timeout: float = 2.0
    # Message search (docs/operations.md, "Search"): PostgreSQL's text search configuration,
    # which the index is built with ("simple": words as written, in any language, as SQLite's
    # FTS5 reads them; "english" stems them); changing it means building the index again.
    search_config: str = "simple"
    # Longest search accepted, in characters (longer is refused), and hits per page.
    search_max_query_chars: int = 200
    search_page_size: int = 20
    # Invitations waiting for one user's answer, from everyone; more are not sent.
    max_pending_invitations: int = 20
    # Of those, how many may come from one inviter: one account cannot fill the whole cap.
    max_pending_invitations_per_inviter: int = 3
    # How often each process pings the channel layer, in seconds (four times as often after a
    # failure): a layer that returns is noticed within a quarter of this, then clients resync.
    layer_check_interval: float = 1.0
    # Flood limits, as (frames per second, burst): token buckets. None turns one off.
    # Frames refused get an error frame `rate_limited`; a socket that goes on sending STRIKES
    # frames in a row past its limit is closed with 4029. Merged key by key.
    rate_limits: dict[str, Any] = field(
        default_factory=lambda: {
            # Every frame one socket sends.
            "CONNECTION": (20, 60),
            # Messages (send frames) one user posts, across all their sockets in this process.
            "USER": (5, 20),
            # History pages (resume frames) one user asks for, across their sockets.
            "RESUME": (5, 30),
            # Feedback (rate frames) one user or visitor gives, across their sockets.
            "FEEDBACK": (1, 20),
            "STRIKES": 30,
            # Open sockets one user may have in one server process (a number, not a bucket);
            # one more is refused with an error frame `too_many_sockets` and close 4029.
            "SOCKETS_PER_USER": 30,
            # Rooms one user creates (the room list's form): 10 at once, then one a minute.
            "ROOMS": (1 / 60, 10),
            # Invitations one user sends, to existing usernames or not: 20, then two a minute.
            "INVITES": (1 / 30, 20),
            # Enforced by parley.uvicorn, per connection, below the frames: ping and pong
            # frames (past the limit: close 1008), and bytes received (bytes per second,
            # burst; past the budget the connection is not read until the budget refills).
            "CONTROL": (10, 30),
            "BYTES": (256 * 1024, 1024 * 1024),
            # Visitors who are not logged in (VISITORS): messages one visitor posts, messages
            # all visitors from one client address post, and new visitors one address makes.
            "VISITOR": (0.5, 10),
            "VISITOR_IP": (2, 30),
            "NEW_VISITORS": (1 / 60, 10),
            # Requests of the embedded chat's endpoint from one client address (one each
            # time a widget connects): each writes a ticket.
            "CHAT_SESSIONS": (5, 60),
        }
    )
    # Visitors who are not logged in, talking to the assistant in a private conversation of
    # their own (docs/embedding.md); merged key by key.
    visitors: dict[str, Any] = field(
        default_factory=lambda: {
            # Off unless the site turns it on: strangers cost the site its assistant's time.
            "ENABLED": False,
            # Whether the assistant answers visitors from the knowledge (docs/knowledge.md):
            # the folders' files and what registrations let anyone read. Off, a visitor's
            # answers get no passages: turn it on once nothing in them is internal.
            "KNOWLEDGE": False,
            # Messages one visitor may post per day (UTC); past it, `quota_exceeded`.
            "DAILY_MESSAGES": 50,
            # Seconds after its last message a visitor's conversation is deleted by
            # `manage.py parley_visitors_expire`.
            "EXPIRE_AFTER": 30 * 24 * 3600,
            # Key of the HMAC-SHA256 with which a host signs the id of a visitor it knows
            # (`data-identity`/`data-identity-hash`); None refuses signed identities.
            "IDENTITY_KEY": None,
            # The header a proxy in front of the site puts the client's address in (e.g.
            # "X-Forwarded-For", its last entry counts); None: the connection's own address.
            "CLIENT_IP_HEADER": None,
        }
    )
    # Tools the assistant calls (docs/tools.md; which tools: BACKENDS[alias]["TOOLS"]);
    # merged key by key.
    tools: dict[str, Any] = field(
        default_factory=lambda: {
            # Rounds of tool calls one answer may make; the round after the last is offered
            # no tools, so that the model answers with what it has.
            "MAX_ROUNDS": 4,
            # Calls the model may make in one round; those past it are not run.
            "MAX_CALLS_PER_ROUND": 8,
            # Characters of a tool's result the model is sent (and the audit keeps).
            "MAX_RESULT_CHARS": 8000,
            # Seconds an async tool may run before it is cancelled. A sync tool cannot be
            # stopped: past this the answer goes on without its result.
            "TIMEOUT": 30.0,
            # Seconds a call of a tool that changes something (confirm=True) waits for
            # approval; then it is denied as expired and the model told.
            "APPROVAL_TIMEOUT": 900.0,
            # A permission ("shop.approve_refund") that lets a member approve or deny the
            # calls made for another member's question; None: only the asker decides.
            "APPROVER_PERMISSION": None,
        }
    )
    # Whether answers' traces (OpenTelemetry, docs/operations.md) hold the question and the
    # answer's text: off, they hold no message content.
    trace_content: bool = False
    # What answers cost (docs/operations.md, "Usage and quotas"); merged key by key.
    usage: dict[str, Any] = field(
        default_factory=lambda: {
            # Prices per million tokens by model name, as the answers' models are named (a
            # trailing * matches any end): {"gpt-4o-mini*": {"INPUT": "0.15", "OUTPUT": "0.6"}}.
            # An answer of a model with no price has no cost.
            "PRICES": {},
            # What the prices are in, for the admin's figures.
            "CURRENCY": "USD",
            # Characters per token of an estimate: the usage of an answer whose model's
            # server sent no counts (stopped before they came, or a backend counting none).
            "CHARS_PER_TOKEN": 4.0,
        }
    )
    # How long messages are kept, by room kind, in days (None: for ever), applied by
    # `manage.py parley_retention` (docs/operations.md); merged key by key.
    retention: dict[str, Any] = field(
        default_factory=lambda: {
            "PRIVATE": None,
            "SHARED": None,
            # Visitors' conversations end with the visitor anyway (VISITORS["EXPIRE_AFTER"]
            # after its last message, by the same command): this prunes a live one.
            "VISITOR": None,
            # Messages deleted per transaction: no run holds a room's rows for long.
            "BATCH_SIZE": 500,
            # Seconds between two transactions: SQLite's other writers get their turn.
            "PAUSE": 0.05,
        }
    )
    # What deleting a user does to their messages in other members' rooms: "anonymise"
    # (kept, with no author) or "delete" (with the answers to their questions); merged key
    # by key.
    erasure: dict[str, Any] = field(default_factory=lambda: {"MESSAGES": "anonymise"})
    # The knowledge the assistant answers from (docs/knowledge.md); merged key by key.
    knowledge: dict[str, Any] = field(
        default_factory=lambda: {
            # Folders (or single files) of Markdown and text documents, indexed by parley_index.
            "FOLDERS": [],
            # How many passages an answer is given at most.
            "TOP_K": 4,
            # The share (0-1) of a question's weight a passage must match to be given at all,
            # unless its meaning is as close as MIN_SIMILARITY.
            "MIN_SCORE": 0.5,
            # The embedder of dense retrieval, by dotted path (parley/knowledge/embeddings.py);
            # None: BM25 alone.
            "EMBEDDINGS": {"BACKEND": "parley.knowledge.embeddings.MiniLM"},
            # The cosine similarity (0-1) of a passage's embedding to the question's that
            # makes it a match whatever words it shares.
            "MIN_SIMILARITY": 0.4,
            # The key of the indexed file that introduces the site ("README.md"): what the
            # offline assistant quotes when asked what it is or can do. None: its own words.
            "ABOUT": None,
        }
    )


def _default(spec: Field[Any]) -> Any:
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


# The defaults by setting name, as PARLEY spells them.
DEFAULTS: dict[str, Any] = {spec.name.upper(): _default(spec) for spec in fields(ParleyConfig)}


# Settings that are dicts themselves, merged key by key over their defaults.
_NESTED = ("ERASURE", "KNOWLEDGE", "RATE_LIMITS", "RETENTION", "TOOLS", "USAGE", "VISITORS")


@cache
def get_config() -> ParleyConfig:
    """The merged configuration (cached; cleared when ``PARLEY`` changes)."""
    user = getattr(settings, "PARLEY", {}) or {}
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        raise ImproperlyConfigured(f"Unknown PARLEY setting(s): {', '.join(sorted(unknown))}")
    merged = {**DEFAULTS, **user}
    for key in _NESTED:
        nested = user.get(key) or {}
        unknown = set(nested) - set(DEFAULTS[key])
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown PARLEY[{key!r}] setting(s): {', '.join(sorted(unknown))}"
            )
        merged[key] = {**DEFAULTS[key], **nested}
    return ParleyConfig(**{key.lower(): value for key, value in merged.items()})


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    # What is built from the settings resets itself on the same signal (backends, throttling):
    # conf sits at the bottom and imports nothing of Parley's.
    if setting == "PARLEY":
        get_config.cache_clear()
