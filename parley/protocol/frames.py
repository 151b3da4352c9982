"""Parley's WebSocket wire format, version 1 (docs/protocol.md).

Pure: parses client frames into typed objects and builds server frames as dicts. It knows
nothing of Channels, the ORM or sockets, so it is tested on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..exceptions import ProtocolError

VERSION = 1

_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # whole value: fullmatch ("$" takes "x\n")
# What the database cannot store: NUL (PostgreSQL refuses it) and surrogates, which JSON can
# escape ("\ud800") but UTF-8 cannot encode (json.loads joins a valid pair into one character).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_SEQ = 2**63 - 1
RATINGS = ("up", "down")
MAX_COMMENT_CHARS = 2000  # a feedback's comment: a few sentences, not another message


@dataclass(frozen=True, slots=True)
class Send:
    """Post ``text``; a ``client_id`` makes a resend after a reconnect idempotent (without
    one, every frame is a new message). With ``edit_of``, the text is a new version of the
    sender's own message ``edit_of`` (an edited question, asked again)."""

    type: ClassVar[str] = "send"
    client_id: str
    text: str
    ask: bool = True
    edit_of: int | None = None

    def reply_fields(self) -> dict[str, Any]:
        """What an error frame about this frame repeats: which message it refuses."""
        return {"client_id": self.client_id}


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the room's streaming answer (``message_id`` None: whichever is streaming)."""

    type: ClassVar[str] = "cancel"
    message_id: int | None = None

    def reply_fields(self) -> dict[str, Any]:
        """What an error frame about this frame repeats (nothing)."""
        return {}


@dataclass(frozen=True, slots=True)
class Resume:
    """Send every message with a sequence number above ``after``."""

    type: ClassVar[str] = "resume"
    after: int = 0

    def reply_fields(self) -> dict[str, Any]:
        """What an error frame about this frame repeats (nothing)."""
        return {}


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Take one's own waiting question ``message_id`` out of the room's queue."""

    type: ClassVar[str] = "withdraw"
    message_id: int

    def reply_fields(self) -> dict[str, Any]:
        """What an error frame about this frame repeats: the question."""
        return {"message_id": self.message_id}


@dataclass(frozen=True, slots=True)
class Regenerate:
    """Answer again the question that the finished answer ``message_id`` answers: a new
    version of it (a retry, for one that failed or was cut off)."""

    type: ClassVar[str] = "regenerate"
    message_id: int

    def reply_fields(self) -> dict[str, Any]:
        """What an error frame about this frame repeats: the answer."""
        return {"message_id": self.message_id}


@dataclass(frozen=True, slots=True)
class Decide:
    """Approve or deny the tool call ``step`` that waits for approval (docs/tools.md); an
    approval may carry the ``arguments`` edited, and ``always`` to approve that tool's
    calls for the asker from now on."""

    type: ClassVar[str] = "decide"
    step: int
    approve: bool
    arguments: dict[str, Any] | None = None
    always: bool = False

    def reply_fields(self) -> dict[str, Any]:
        """What an error frame about this frame repeats: which call it decides."""
        return {"step": self.step}


@dataclass(frozen=True, slots=True)
class Rate:
    """Give one's feedback on the finished answer ``message_id``: ``rating`` ``"up"`` or
    ``"down"`` with an optional ``comment``, or ``None`` to take it back. It is the
    sender's own: the room's other members are not told (docs/protocol.md)."""

    type: ClassVar[str] = "rate"
    message_id: int
    rating: str | None
    comment: str = ""

    def reply_fields(self) -> dict[str, Any]:
        """What an error frame about this frame repeats: the answer."""
        return {"message_id": self.message_id}


ClientFrame = Send | Cancel | Resume | Withdraw | Regenerate | Decide | Rate


def _field(frame: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any = ...) -> Any:
    if name not in frame:
        if default is ...:
            raise ProtocolError("bad_frame", f"'{frame['type']}' frames need a '{name}' field.")
        return default
    value = frame[name]
    # bool is a subclass of int in Python, but true is not a sequence number.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = {
            str: "a string", int: "an integer", bool: "true or false", dict: "an object",
            type(None): "null",
        }  # fmt: skip
        raise ProtocolError(
            "bad_frame", f"'{name}' must be {' or '.join(names[k] for k in kinds)}."
        )
    return value


def parse_client_frame(raw: str, *, max_chars: int) -> ClientFrame:
    """Parse one text frame from a client.

    Raises :class:`ProtocolError` with a stable ``code`` (``bad_json``, ``bad_frame``,
    ``unknown_type``, ``unsupported_version``, ``empty_text``, ``text_too_long``,
    ``comment_too_long``) naming the problem.
    """
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"The frame is not valid JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "A frame must be a JSON object.")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_frame", "A frame needs a string 'type' field.")
    version = frame.get("v", VERSION)
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(
            "unsupported_version", f"This server speaks protocol version {VERSION}."
        )
    parse = _PARSERS.get(kind)
    if parse is None:
        *others, last = _PARSERS
        raise ProtocolError(
            "unknown_type",
            f"Unknown frame type {kind[:40]!r}; expected {', '.join(others)} or {last}.",
        )
    return parse(frame, max_chars)


def _parse_send(frame: dict[str, Any], max_chars: int) -> Send:
    client_id = _field(frame, "client_id", (str,), None)
    if client_id is None:
        client_id = ""
    elif not _CLIENT_ID.fullmatch(client_id):
        raise ProtocolError(
            "bad_frame", "'client_id' must be 1–64 letters, digits or '_.:-' characters."
        )
    try:
        text = _field(frame, "text", (str,))
        if _UNSTORABLE.search(text):
            raise ProtocolError(
                "bad_frame", "'text' must not contain NUL characters or unpaired surrogates."
            )
        if not text.strip():
            raise ProtocolError("empty_text", "The message is empty.")
        if len(text) > max_chars:
            raise ProtocolError(
                "text_too_long", f"The message is {len(text)} characters; the limit is {max_chars}."
            )
        ask = _field(frame, "ask", (bool,), True)
        edit_of = _message_id(frame, "edit_of") if "edit_of" in frame else None
        return Send(client_id=client_id, text=text, ask=ask, edit_of=edit_of)
    except ProtocolError as exc:
        exc.client_id = client_id  # so the client knows which of its messages was refused
        raise


def _parse_cancel(frame: dict[str, Any], max_chars: int) -> Cancel:
    return Cancel(message_id=_field(frame, "message_id", (int, type(None)), None))


def _parse_withdraw(frame: dict[str, Any], max_chars: int) -> Withdraw:
    return Withdraw(message_id=_message_id(frame))


def _parse_regenerate(frame: dict[str, Any], max_chars: int) -> Regenerate:
    return Regenerate(message_id=_message_id(frame))


def _message_id(frame: dict[str, Any], name: str = "message_id") -> int:
    message_id = _field(frame, name, (int,), None)
    if message_id is None or not 0 < message_id <= MAX_SEQ:
        raise ProtocolError("bad_frame", f"'{name}' must name a message.")
    return int(message_id)


def _parse_decide(frame: dict[str, Any], max_chars: int) -> Decide:
    step = _message_id(frame, "step")
    approve = _field(frame, "approve", (bool,))
    arguments = _field(frame, "arguments", (dict, type(None)), None)
    always = _field(frame, "always", (bool,), False)
    if not approve and (arguments is not None or always):
        raise ProtocolError("bad_frame", "'arguments' and 'always' go only with an approval.")
    return Decide(step=step, approve=approve, arguments=arguments, always=always)


def _parse_rate(frame: dict[str, Any], max_chars: int) -> Rate:
    message_id = _message_id(frame)
    rating = _field(frame, "rating", (str, type(None)))
    if rating is not None and rating not in RATINGS:
        raise ProtocolError("bad_frame", '\'rating\' must be "up", "down" or null.')
    comment = _field(frame, "comment", (str,), "").strip()
    if _UNSTORABLE.search(comment):
        raise ProtocolError(
            "bad_frame", "'comment' must not contain NUL characters or unpaired surrogates."
        )
    if len(comment) > MAX_COMMENT_CHARS:
        raise ProtocolError(
            "comment_too_long",
            f"The comment is {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}.",
        )
    if comment and rating is None:
        raise ProtocolError("bad_frame", "A 'comment' goes with a rating.")
    return Rate(message_id=message_id, rating=rating, comment=comment)


def _parse_resume(frame: dict[str, Any], max_chars: int) -> Resume:
    after = _field(frame, "after", (int,), 0)
    if not 0 <= after <= MAX_SEQ:
        raise ProtocolError("bad_frame", "'after' must be a sequence number, 0 or more.")
    return Resume(after=after)


# One parser per client frame type, as the consumer has one handler per type
# (parley.realtime.handlers): a new frame type adds an entry here and a handler there.
_PARSERS: dict[str, Callable[[dict[str, Any], int], ClientFrame]] = {
    Send.type: _parse_send,
    Cancel.type: _parse_cancel,
    Resume.type: _parse_resume,
    Withdraw.type: _parse_withdraw,
    Regenerate.type: _parse_regenerate,
    Decide.type: _parse_decide,
    Rate.type: _parse_rate,
}


def encode(frame: dict[str, Any]) -> str:
    """Serialise a server frame (compact JSON, UTF-8 characters kept as they are)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def hello(
    *, room: dict[str, Any], user: dict[str, Any], last_seq: int, limits: dict[str, int]
) -> dict[str, Any]:
    return {
        "type": "hello",
        "v": VERSION,
        "room": room,
        "user": user,
        "last_seq": last_seq,
        "limits": limits,
    }


def ack(*, client_id: str, message: dict[str, Any], duplicate: bool) -> dict[str, Any]:
    return {"type": "ack", "client_id": client_id, "message": message, "duplicate": duplicate}


def message(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "message": payload}


def delta(
    *, message_id: int, offset: int, text: str, blocks: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``text`` continues the answer at character ``offset``: a client appends it when its
    copy is ``offset`` characters long, and an offset of 0 replaces what it has. ``blocks``,
    on some deltas, is the answer's HTML so far (:meth:`parley.rendering.BlocksUpdate.wire`)."""
    frame = {"type": "delta", "message_id": message_id, "offset": offset, "text": text}
    if blocks is not None:
        frame["blocks"] = blocks
    return frame


def tool(*, message_id: int, step: dict[str, Any]) -> dict[str, Any]:
    """A tool call of a streaming answer: when it ended, waits for approval, or was
    decided (docs/tools.md); a client replaces the step with the same ``id``."""
    return {"type": "tool", "message_id": message_id, "step": step}


def feedback(*, message_id: int, given: dict[str, Any] | None) -> dict[str, Any]:
    """The sender's feedback on the answer ``message_id`` as now stored (``given``: its
    rating and comment, or None when taken back): the reply to a ``rate`` frame, to the
    socket that sent it alone."""
    return {"type": "feedback", "message_id": message_id, "feedback": given}


def done(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "done", "message": payload}


def history(*, messages: list[dict[str, Any]], more: bool, last_seq: int) -> dict[str, Any]:
    return {"type": "history", "messages": messages, "more": more, "last_seq": last_seq}


def room(payload: dict[str, Any]) -> dict[str, Any]:
    """The room changed (its title): ``payload`` is the room as ``hello`` gives it."""
    return {"type": "room", "room": payload}


def sync() -> dict[str, Any]:
    """Live frames may have been lost (the channel layer was down): resume from your last seq."""
    return {"type": "sync"}


def error(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail, **extra}
