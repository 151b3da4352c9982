#!/usr/bin/env python3
"""Soak: clients join, chat, ask, stop answers, leave and come back for ``--duration`` seconds.

Parley runs as ``make run`` serves it (bench/targets.py: uvicorn with uvloop, httptools and
parley.uvicorn, a fresh SQLite database), in-memory layer by default or channels-redis'
pub/sub layer with ``--redis``, with :class:`SoakBackend`: an offline backend that streams
answers of a length the question asks for, so answers stream, and get stopped, all the time.

Every client is one user in one room. It checks, while connected, that each message of its
room arrives once, in ``seq`` order, with no gap; that each of its sends is acknowledged; that
an answer it saw from its start ends (``done``) with the text its deltas built. When it comes
back it resumes from its last ``seq`` (docs/protocol.md) and resends what was not
acknowledged. At the end every client catches up and is compared with the database (every
message of its room, every answer's final text, every message it sent stored once), then all
leave and the server must hold no member, socket or subscription.

The server's RSS, descriptors, TCP sockets and ``/status/`` are sampled every few seconds.
The memory bound: RSS at the end of the load may exceed RSS after the warm-up (120 s, or a
third of a shorter run) by at most ``--max-growth`` percent (bench/README.md, "Soak", says
why 120 s and 10 %).

    .venv/bin/python bench/soak.py                          # 10 minutes, in-memory layer
    .venv/bin/python bench/soak.py --redis                  # channels-redis pub/sub layer
    .venv/bin/python bench/soak.py --duration 60            # a quick check

Exits 1 if a check or the bound fails. Writes ``bench/results/soak-<date>-<layer>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.targets import REDIS_URL, Parley, make_targets, workdir  # noqa: E402
from parley.backends.base import AssistantRequest, BackendEvent, Finish, TextDelta  # noqa: E402
from parley.backends.scripted import ScriptedBackend  # noqa: E402

MIB = 1024 * 1024
LENGTH = re.compile(r"\[(\d+)\]")
PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")  # Django's and uvicorn's logs
# Error frames a well-behaved client meets in normal use: asking while the room's queue of
# waiting questions is full, and pressing stop just as the answer ended.
EXPECTED_ERRORS = frozenset({"queue_full", "nothing_to_cancel"})
ANSWER_WORDS = (8, 40, 150)  # short, medium and long answers (× the delay per word)


class SoakBackend(ScriptedBackend):
    """Streams as many words as the question's ``[n]`` asks for (10 without one), one every
    ``PARLEY_SOAK_DELAY`` seconds (0.02 by default), with a little Markdown."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("delay", float(os.environ.get("PARLEY_SOAK_DELAY", "0.02")))
        super().__init__(**options)

    async def stream(self, request: AssistantRequest) -> AsyncIterator[BackendEvent]:
        match = LENGTH.search(request.question)
        for index in range(int(match.group(1)) if match else 10):
            await asyncio.sleep(self.delay)
            yield TextDelta(f"**w{index}** " if index % 7 == 0 else f"w{index} ")
        yield Finish("stop")


@dataclass
class AnswerState:
    """A client's copy of one assistant answer."""

    seq: int | None
    copy: Any  # parley.testing.AnswerText
    session: Session | None = None  # the session that saw it start, while that one lasts
    status: str = "streaming"
    final: str | None = None
    deltas: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) received


@dataclass
class Session:
    """One connection of a client."""

    ws: Any
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    resuming: bool = False  # live messages wait in ``buffer`` until the history is in
    resumes: int = 0  # resume requests whose history has not ended yet
    buffer: list[dict[str, Any]] = field(default_factory=list)
    leaving: bool = False  # we are closing it
    reader: asyncio.Task[None] | None = None
    missed: set[int] = field(default_factory=set)  # seqs skipped by a gap while connected


class Soak:
    """The shared state of a run: the server, the rooms, the counters."""

    def __init__(
        self, args: argparse.Namespace, target: Parley, rooms: list[Any], users: list[Any]
    ) -> None:
        self.args = args
        self.target = target
        self.rooms = rooms
        self.users = users
        self.run_id = uuid.uuid4().hex[:6]
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self.errors: Counter[str] = Counter()  # anything that must not happen
        self.events: Counter[str] = Counter()  # what happened, for the report
        self.error_samples: list[dict[str, Any]] = []
        self.answer_status: dict[int, str] = {}  # answer id -> final status, first seen
        self.ack_ms: list[float] = []
        self.samples: list[dict[str, Any]] = []
        self.clients: list[Client] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def error(self, kind: str, client: Client | None = None, **detail: Any) -> None:
        self.errors[kind] += 1
        if self.errors[kind] <= 20:  # the first few of each kind
            who = {"client": client.index, "room": client.room.public_id} if client else {}
            self.error_samples.append(
                {"t": round(self.elapsed(), 1), "kind": kind, **who, **detail}
            )

    def connected(self) -> int:
        return sum(1 for c in self.clients if c.session and not c.session.closed.is_set())


class Client:
    """One user in one room, connecting and leaving again and again."""

    def __init__(self, soak: Soak, index: int, user: Any, room: Any) -> None:
        self.soak = soak
        self.args = soak.args
        self.index = index
        self.user = user  # a user object: a ticket is bound to its session auth hash
        self.room = room
        self.rng = random.Random(f"{soak.args.seed}-{index}")
        self.held: dict[int, int] = {}  # seq -> message id, for every seq 1..top
        self.top = 0
        self.answers: dict[int, AnswerState] = {}
        self.sent: dict[str, tuple[str, bool]] = {}  # client id -> (text, ask), every send
        self.unacked: dict[str, float] = {}  # client id -> when first sent
        self.resent: set[str] = set()
        self.acked: dict[str, int] = {}  # client id -> stored message id
        self.session: Session | None = None
        self.counter = 0

    # Connecting ----------------------------------------------------------------------------

    async def connect(self) -> Session | None:
        """Connect, wait for ``hello``, resume from the last ``seq`` and resend what was not
        acknowledged (docs/protocol.md, "Resuming after a reconnect")."""
        import websockets

        soak = self.soak
        # Tickets are single-use rows in the database: one for each connection, written off
        # the event loop.
        url = await asyncio.to_thread(soak.target.room_url, self.user, self.room.public_id, 1)
        try:
            ws = await websockets.connect(
                url,
                additional_headers={"Origin": soak.target.origin()},
                compression=None if self.args.no_compression else "deflate",
                open_timeout=30,
                ping_interval=None,
                proxy=None,
                max_size=2**22,
            )
        except Exception as exc:
            soak.error("connect_failed", self, detail=repr(exc)[:200])
            return None
        session = Session(ws)
        self.session = session
        session.reader = asyncio.create_task(self._read(session))
        soak.events["connects"] += 1
        try:
            await asyncio.wait_for(session.hello.wait(), 30)
            await self._resume(session)
            await asyncio.wait_for(session.caught_up.wait(), 60)
        except TimeoutError:
            soak.error("no_hello_or_history_within_timeout", self)
            await self.leave(session, abort=True)
            return None
        for client_id in list(self.unacked):
            text, ask = self.sent[client_id]
            self.resent.add(client_id)
            soak.events["resends"] += 1
            await self._send(
                session, {"type": "send", "client_id": client_id, "text": text, "ask": ask}
            )
        return session

    def resume_point(self) -> int:
        """The highest ``seq`` held, or one less than that of an answer still streaming, so
        that the history tells how it went on."""
        streaming = [
            a.seq for a in self.answers.values() if a.status == "streaming" and a.seq is not None
        ]
        return min([self.top, *(seq - 1 for seq in streaming)])

    async def leave(self, session: Session, *, abort: bool = False) -> None:
        session.leaving = True
        if abort:
            session.ws.transport.abort()  # no closing handshake: a dropped connection
        else:
            await session.ws.close()
        if session.reader is not None:
            await asyncio.wait_for(asyncio.shield(session.reader), 30)

    async def _send(self, session: Session, frame: dict[str, Any]) -> bool:
        try:
            await session.ws.send(json.dumps(frame))
        except Exception:  # closed under us: the reader reports how
            return False
        return True

    # Reading ------------------------------------------------------------------------------

    async def _read(self, session: Session) -> None:
        soak = self.soak
        try:
            async for text in session.ws:
                soak.events["frames"] += 1
                await self._on_frame(session, json.loads(text))
        except Exception as exc:
            import websockets

            if not isinstance(exc, websockets.ConnectionClosed):
                soak.error("client_exception", self, detail=traceback.format_exc()[-600:])
        finally:
            session.closed.set()
            for answer in self.answers.values():
                if answer.session is session:
                    answer.session = None
            code = session.ws.close_code
            if not session.leaving:
                soak.error("closed_by_server", self, code=code, reason=session.ws.close_reason)

    async def _on_frame(self, session: Session, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "hello":
            if frame["last_seq"] < self.top:
                self.soak.error("hello_last_seq_went_back", self, got=frame["last_seq"])
            session.resuming = True  # connect() resumes: live messages wait for the history
            session.hello.set()
        elif kind == "message":
            if frame["message"]["seq"] in session.missed:  # late, not lost: frames reordered
                session.missed.discard(frame["message"]["seq"])
                self.soak.error("message_after_a_later_one", self, seq=frame["message"]["seq"])
            self._note(frame["message"], session)
            if session.resuming:
                session.buffer.append(frame["message"])
            else:
                await self._live(session, frame["message"])
        elif kind == "delta":
            answer = self._answer(frame["message_id"], None)
            answer.copy.apply(frame["offset"], frame["text"])
            answer.deltas.append((frame["offset"], len(frame["text"])))
            self.soak.events["deltas"] += 1
        elif kind == "done":
            self._on_done(session, frame["message"])
        elif kind == "ack":
            self._on_ack(frame)
        elif kind == "history":
            await self._on_history(session, frame)
        elif kind == "sync":  # the server's layer failed: live frames may be lost
            self.soak.events["sync_frames"] += 1
            await self._resume(session)
        elif kind == "error":
            code = frame.get("code")
            if code in EXPECTED_ERRORS:
                self.soak.events[f"error_frame_{code}"] += 1
            else:
                self.soak.error(f"error_frame_{code}", self, detail=frame.get("detail"))
        else:
            self.soak.error("unknown_frame", self, frame=str(frame)[:200])

    def _answer(self, message_id: int, seq: int | None) -> AnswerState:
        from parley.testing import AnswerText

        answer = self.answers.get(message_id)
        if answer is None:
            answer = self.answers[message_id] = AnswerState(seq=seq, copy=AnswerText())
        elif answer.seq is None:
            answer.seq = seq
        return answer

    def _note(self, message: dict[str, Any], session: Session | None) -> None:
        """Record what a ``message`` (live, ``session`` given) or history entry says of an
        answer."""
        if message["role"] != "assistant":
            return
        answer = self._answer(message["id"], message["seq"])
        if message["status"] == "streaming":
            if session is not None:
                answer.session = session  # seen from its start: every delta follows
            elif len(message["text"]) > len(answer.copy.text):
                # The text stored so far, unless live deltas already built more: it was
                # saved earlier, and replacing would drop what they added.
                answer.copy.apply(0, message["text"])
        else:
            self._finish(answer, message)

    def _finish(self, answer: AnswerState, message: dict[str, Any]) -> None:
        answer.status = message["status"]
        answer.final = message["text"]
        if message["id"] not in self.soak.answer_status:
            self.soak.answer_status[message["id"]] = message["status"]
            self.soak.events[f"answers_{message['status']}"] += 1

    def _place(self, message: dict[str, Any]) -> bool:
        """Hold ``message`` at its ``seq``; False if it is beyond the next one (a gap)."""
        seq = message["seq"]
        if seq <= self.top:
            if self.held.get(seq) != message["id"]:
                self.soak.error("seq_conflict", self, seq=seq, held=self.held.get(seq))
            return True
        if seq != self.top + 1:
            return False
        self.held[seq] = message["id"]
        self.top = seq
        self.soak.events["deliveries"] += 1
        return True

    async def _live(self, session: Session, message: dict[str, Any]) -> None:
        if self._place(message):
            return
        self.soak.error("gap_while_connected", self, expected=self.top + 1, got=message["seq"])
        session.missed.update(range(self.top + 1, message["seq"]))
        session.buffer.append(message)  # recover as the protocol says: resume after the gap
        await self._resume(session)

    async def _resume(self, session: Session) -> None:
        session.resuming = True
        session.resumes += 1
        await self._send(session, {"type": "resume", "after": self.resume_point()})

    async def _on_history(self, session: Session, frame: dict[str, Any]) -> None:
        if not session.resumes:
            self.soak.error("history_without_resume", self)
            return
        for message in frame["messages"]:
            self._note(message, None)
            if not self._place(message):
                if session.resumes == 1:
                    self.soak.error(
                        "gap_in_history", self, expected=self.top + 1, got=message["seq"]
                    )
                session.buffer.append(message)  # several resumes' pages interleave
        self.soak.events["history_pages"] += 1
        if frame["more"]:
            await self._send(session, {"type": "resume", "after": frame["last_seq"]})
            return
        session.resumes -= 1
        if session.resumes:
            return
        session.resuming = False
        buffered, session.buffer = sorted(session.buffer, key=lambda m: m["seq"]), []
        for index, message in enumerate(buffered):
            if not self._place(message):
                self.soak.error("gap_after_resume", self, expected=self.top + 1, got=message["seq"])
                session.buffer = buffered[index:]
                await self._resume(session)
                return
        session.caught_up.set()

    def _on_done(self, session: Session, message: dict[str, Any]) -> None:
        answer = self._answer(message["id"], message["seq"])
        if answer.session is session:
            # This session saw the answer start: its deltas must have built the whole text.
            if answer.copy.pending or answer.copy.text != message["text"]:
                self.soak.error(
                    "answer_deltas_differ_from_done",
                    self,
                    message_id=message["id"],
                    built=answer.copy.text[-80:],
                    done=message["text"][-80:],
                    pending=len(answer.copy.pending),
                    deltas=answer.deltas[-6:],
                    length=len(message["text"]),
                )
            self.soak.events["answers_checked_from_start"] += 1
        answer.session = None
        self._finish(answer, message)

    def _on_ack(self, frame: dict[str, Any]) -> None:
        client_id = frame["client_id"]
        message = frame["message"]
        sent_at = self.unacked.pop(client_id, None)
        if sent_at is None:
            self.soak.error("ack_for_nothing_pending", self, client_id=client_id)
            return
        if frame["duplicate"] and client_id not in self.resent:
            self.soak.error("duplicate_ack_for_a_first_send", self, client_id=client_id)
        if message.get("client_id") != client_id or (message["author"] or {}).get("id") != (
            self.user.pk
        ):
            self.soak.error("ack_for_someone_else", self, client_id=client_id)
        self.acked[client_id] = message["id"]
        self.soak.events["acks"] += 1
        if client_id not in self.resent:
            self.soak.ack_ms.append((time.monotonic() - sent_at) * 1000)

    # Acting -------------------------------------------------------------------------------

    async def _pause(self, seconds: float, session: Session | None = None) -> None:
        """Sleep, waking early when the run stops (or ``session`` closes)."""
        waits = [asyncio.ensure_future(self.soak.stopping.wait())]
        if session is not None:
            waits.append(asyncio.ensure_future(session.closed.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _post(self, session: Session) -> None:
        self.counter += 1
        client_id = f"{self.soak.run_id}-{self.index}-{self.counter}"
        ask = self.rng.random() < self.args.ask
        words = self.rng.choice(ANSWER_WORDS)
        text = f"[{words}] message {self.counter} from client {self.index} — héllo ✓"
        self.sent[client_id] = (text, ask)
        self.unacked[client_id] = time.monotonic()
        self.soak.events["sends"] += 1
        self.soak.events["asks"] += ask
        frame = {"type": "send", "client_id": client_id, "text": text, "ask": ask}
        await self._send(session, frame)

    async def _act(self, session: Session) -> None:
        if session.closed.is_set():
            return
        streaming = [mid for mid, a in self.answers.items() if a.session is session]
        if streaming and self.rng.random() < self.args.cancel:
            self.soak.events["cancels"] += 1
            frame: dict[str, Any] = {"type": "cancel"}
            if self.rng.random() < 0.5:  # name the answer, as the browser's stop button does
                frame["message_id"] = max(streaming)
            await self._send(session, frame)
        else:
            await self._post(session)

    async def live(self) -> None:
        """Sessions and pauses until the run stops; the last session is left open."""
        args = self.args
        await self._pause(self.rng.uniform(0, args.ramp))
        while not self.soak.stopping.is_set():
            if self.rng.random() < args.fresh:
                self._forget()
            session = await self.connect()
            if session is None:
                await self._pause(2)
                continue
            ends = time.monotonic() + self.rng.expovariate(1 / args.session)
            while not self.soak.stopping.is_set() and not session.closed.is_set():
                left = ends - time.monotonic()
                if left <= 0:
                    break
                await self._pause(min(left, self.rng.expovariate(1 / args.think)), session)
                if time.monotonic() < ends and not self.soak.stopping.is_set():
                    await self._act(session)
            if self.soak.stopping.is_set():
                return
            how = self.rng.random()
            if how < 0.1:  # leave while a message is on its way: it is resent next time
                await self._post(session)
                self.soak.events["leaves_unacked"] += 1
                await self.leave(session, abort=True)
            elif how < 0.3:
                self.soak.events["leaves_dropped"] += 1
                await self.leave(session, abort=True)
            else:
                self.soak.events["leaves_closed"] += 1
                await self.leave(session)
            self.session = None
            await self._pause(self.rng.uniform(*args.offline))

    def _forget(self) -> None:
        """A new device: nothing held, everything comes again from the history (paged)."""
        self.held.clear()
        self.top = 0
        self.answers.clear()
        self.soak.events["fresh_joins"] += 1

    async def settle(self) -> None:
        """After the load: be connected, caught up, with every send acknowledged."""
        session = self.session
        if session is None or session.closed.is_set():
            session = await self.connect()
        if session is not None and not session.caught_up.is_set():
            await asyncio.wait_for(session.caught_up.wait(), 60)

    def settled(self, last_seq: int) -> bool:
        return (
            self.session is not None
            and not self.session.closed.is_set()
            and not self.session.resuming
            and not self.unacked
            and self.top == last_seq
            and all(a.status != "streaming" for a in self.answers.values())
        )


# The database ---------------------------------------------------------------------------


def create_rooms(owner: Any, rooms: int, clients: int) -> tuple[list[Any], list[Any]]:
    """``rooms`` shared rooms and one member per client (client ``i`` in room ``i % rooms``);
    returns the rooms and the users. Users get no password (tickets need none), which
    keeps creating hundreds of them fast."""
    from django.contrib.auth import get_user_model

    from parley.models import Membership
    from parley.rooms import services

    user_model = get_user_model()
    made = [
        services.room_create(owner=owner, title=f"Soak {n}", kind="shared") for n in range(rooms)
    ]
    users = []
    for n in range(clients):
        user = user_model(username=f"soak-{n}")
        user.set_unusable_password()
        users.append(user)
    user_model.objects.bulk_create(users)
    users = list(user_model.objects.filter(username__startswith="soak-").order_by("pk"))
    by_name = {u.username: u for u in users}
    Membership.objects.bulk_create(
        Membership(room=made[n % rooms], user=by_name[f"soak-{n}"], invited_by=owner)
        for n in range(clients)
    )
    return made, [by_name[f"soak-{n}"] for n in range(clients)]


def database_state(room_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per room: its ``last_seq`` and every message (seq → id, author, client id, text,
    status)."""
    from django.db import close_old_connections

    from parley.models import Message, Room

    close_old_connections()
    rooms = {
        pk: {"last_seq": last, "messages": {}}
        for pk, last in Room.objects.filter(pk__in=room_ids).values_list("pk", "last_seq")
    }
    rows = Message.objects.filter(room_id__in=room_ids).values(
        "room_id", "seq", "id", "role", "author_id", "client_id", "text", "status"
    )
    for row in rows:
        rooms[row["room_id"]]["messages"][row["seq"]] = row
    for room in rooms.values():
        room["by_id"] = {row["id"]: row for row in room["messages"].values()}
    return rooms


def verify(soak: Soak, db: dict[int, dict[str, Any]]) -> dict[str, int]:
    """Compare every client with the database; counts what was compared."""
    checked = Counter()
    for room in soak.rooms:
        state = db[room.pk]
        if sorted(state["messages"]) != list(range(1, state["last_seq"] + 1)):
            soak.error("database_seq_not_gapless", room=room.public_id)
        streaming = [m for m in state["messages"].values() if m["status"] == "streaming"]
        if streaming:
            soak.error("answers_still_streaming_at_end", count=len(streaming))
    for client in soak.clients:
        state = db[client.room.pk]
        messages = state["messages"]
        by_id = state["by_id"]
        if client.top != state["last_seq"] or len(client.held) != state["last_seq"]:
            soak.error("client_missing_messages", client, held=client.top, room=state["last_seq"])
        for seq, message_id in client.held.items():
            row = messages.get(seq)
            if row is None or row["id"] != message_id:
                soak.error("client_message_differs", client, seq=seq)
            checked["messages_compared"] += 1
        for message_id, answer in client.answers.items():
            row = by_id.get(message_id)
            if row is None:
                continue  # seen only as a delta before a fresh join cleared it: nothing held
            if answer.status != row["status"] or answer.final != row["text"]:
                soak.error(
                    "client_answer_differs", client, message_id=message_id, held=answer.status
                )
            checked["answers_compared"] += 1
        mine = {
            m["client_id"]: m["id"]
            for m in messages.values()
            if m["author_id"] == client.user.pk and m["client_id"]
        }
        for client_id in client.sent:
            if client_id not in mine:
                soak.error("lost_message", client, client_id=client_id)
            elif client.acked.get(client_id) != mine[client_id]:
                soak.error("ack_differs_from_stored", client, client_id=client_id)
            checked["sends_compared"] += 1
        for client_id in set(mine) - set(client.sent):
            soak.error("stored_but_never_sent", client, client_id=client_id)
    return dict(checked)


# Watching the server ----------------------------------------------------------------------


class Watcher:
    """Samples the server process and its ``/status/`` page."""

    def __init__(self, soak: Soak) -> None:
        import psutil

        self.soak = soak
        self.process = psutil.Process(soak.target.proc.pid)
        self.process.cpu_percent()
        self.me = psutil.Process()
        self.me.cpu_percent()
        self.last_line = 0.0
        self.last_events: Counter[str] = Counter()
        self.acks_seen = 0
        self.threads: dict[int, float] = {}
        self.threads_at = time.monotonic()

    def thread_cpu(self) -> tuple[float, float]:
        """CPU % since the last sample of the server's main thread (the event loop) and of
        its busiest other thread (the database thread, if it is the bottleneck)."""
        now = time.monotonic()
        seconds = max(now - self.threads_at, 1e-9)
        times = {t.id: t.user_time + t.system_time for t in self.process.threads()}
        used = {t: (cpu - self.threads.get(t, 0.0)) / seconds * 100 for t, cpu in times.items()}
        self.threads, self.threads_at = times, now
        main = used.pop(self.process.pid, 0.0)
        return round(main, 1), round(max(used.values(), default=0.0), 1)

    async def sample(self, phase: str) -> dict[str, Any]:
        soak = self.soak
        port = soak.target.port
        acks, self.acks_seen = soak.ack_ms[self.acks_seen :], len(soak.ack_ms)
        try:
            status = await asyncio.to_thread(soak.target.status)
        except Exception as exc:
            soak.error("status_page_failed", detail=repr(exc)[:200])
            status = {}
        with self.process.oneshot():
            rss = self.process.memory_info().rss
            fds = self.process.num_fds()
            cpu = self.process.cpu_percent()
            main_thread, other_thread = self.thread_cpu()
            tcp = sum(
                1
                for c in self.process.net_connections("tcp")
                if c.status == "ESTABLISHED" and c.laddr and c.laddr.port == port
            )
        sample = {
            "t": round(soak.elapsed(), 1),
            "phase": phase,
            "rss_mib": round(rss / MIB, 2),
            "fds": fds,
            "tcp": tcp,
            "server_cpu_pct": cpu,
            "loop_cpu_pct": main_thread,
            "db_cpu_pct": other_thread,
            "driver_cpu_pct": self.me.cpu_percent(),
            "load1": os.getloadavg()[0],
            "ack_p50_ms": percentile(acks, 50),
            "ack_p99_ms": percentile(acks, 99),
            "connected": soak.connected(),
            "hub_rooms": len(status.get("rooms", {})),
            "hub_members": sum(status.get("rooms", {}).values()),
            "hub_sockets": status.get("sockets"),
            "backlogged": status.get("backlogged"),
            "answers_running": len(status.get("answers", [])),
            "sends": soak.events["sends"],
            "deliveries": soak.events["deliveries"],
            "errors": sum(soak.errors.values()),
        }
        soak.samples.append(sample)
        return sample

    def progress(self, sample: dict[str, Any]) -> None:
        events = self.soak.events
        sends = events["sends"] - self.last_events["sends"]
        seconds = max(sample["t"] - self.last_line, 1e-9)
        answers = sum(v for k, v in events.items() if k.startswith("answers_") and "from" not in k)
        print(
            f"[{sample['t']:>4.0f} s] online {sample['connected']:>3}/{len(self.soak.clients)}"
            f" | sent {events['sends']:>6,} ({sends / seconds:2.0f}/s)"
            f" delivered {events['deliveries']:>7,} answers {answers:>5,}"
            f" ({events['answers_cancelled']:,} stopped) joins {events['connects']:>5,}"
            f" | errors {sample['errors']} | rss {sample['rss_mib']:5.1f} MiB fds {sample['fds']}"
            f" | hub {sample['hub_rooms']} rooms {sample['hub_sockets']} sockets"
            f" {sample['backlogged']} backlogged {sample['answers_running']} answering"
            f" | ack p50 {sample['ack_p50_ms'] or 0:.0f} ms"
            f" | cpu server {sample['server_cpu_pct']:.0f}% (loop {sample['loop_cpu_pct']:.0f}%,"
            f" db {sample['db_cpu_pct']:.0f}%) driver {sample['driver_cpu_pct']:.0f}%"
            f" load {sample['load1']:.1f}",
            flush=True,
        )
        self.last_line = sample["t"]
        self.last_events = Counter(events)

    async def run(self) -> None:
        while True:
            sample = await self.sample("load")
            if sample["t"] - self.last_line >= self.soak.args.progress - 0.5:
                self.progress(sample)
            await asyncio.sleep(self.soak.args.sample)


def redis_leftovers(prefix: str, groups: list[str]) -> dict[str, Any]:
    """Subscribers Redis still has for the rooms' groups (room and control groups), and the
    run's channels other than the two every server process keeps for as long as it runs:
    its hub channel (``parley.hub.…``) and the revocations group (``parley.access``, since
    issue 9; parley/realtime/access.py)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = [f"{prefix}__group__{group}" for group in groups]
        counts = dict(client.pubsub_numsub(*names))
        channels = sorted(c.decode() for c in client.pubsub_channels(f"{prefix}*"))
    finally:
        client.close()
    return {
        "group_subscribers": sum(counts.values()),
        "channels": channels,
        "unexpected_channels": [
            c for c in channels if "parley.hub." not in c and not c.endswith("__parley.access")
        ],
    }


# The run ------------------------------------------------------------------------------------


async def wait_until(predicate: Any, timeout: float, every: float = 0.5) -> bool:
    """Poll the async ``predicate`` until it holds or ``timeout`` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(every)
    return await predicate()


async def soak_run(soak: Soak) -> dict[str, Any]:
    args = soak.args
    soak.clients = [
        Client(soak, n, user, soak.rooms[n % len(soak.rooms)]) for n, user in enumerate(soak.users)
    ]
    watcher = Watcher(soak)
    sampler = asyncio.create_task(watcher.run())
    lives = [asyncio.create_task(c.live()) for c in soak.clients]
    await asyncio.sleep(args.duration)
    soak.stopping.set()
    end_of_load = await watcher.sample("end of load")
    watcher.progress(end_of_load)
    sampler.cancel()
    await asyncio.gather(*lives)
    print("load stopped; every client catches up", flush=True)

    # Catch up: every client connected, resumed, its sends acknowledged, no answer streaming.
    await asyncio.gather(*(c.settle() for c in soak.clients), return_exceptions=True)
    room_ids = [r.pk for r in soak.rooms]

    async def answers_done() -> bool:
        status = await asyncio.to_thread(soak.target.status)
        return not status["answers"]

    if not await wait_until(answers_done, 60):
        soak.error("answers_still_running_after_60_s")
    db: dict[int, dict[str, Any]] = {}

    async def clients_settled() -> bool:
        nonlocal db
        db = await asyncio.to_thread(database_state, room_ids)
        return all(c.settled(db[c.room.pk]["last_seq"]) for c in soak.clients)

    if not await wait_until(clients_settled, 60, every=1):
        soak.error(
            "clients_not_caught_up_after_60_s",
            count=sum(1 for c in soak.clients if not c.settled(db[c.room.pk]["last_seq"])),
        )
    compared = verify(soak, db)
    settled = await watcher.sample("caught up")
    print(f"compared with the database: {compared}; everyone leaves", flush=True)

    # Everyone leaves: half close the socket properly, half drop it.
    leaving = [
        c.leave(c.session, abort=n % 2 == 1)
        for n, c in enumerate(soak.clients)
        if c.session is not None
    ]
    await asyncio.gather(*leaving, return_exceptions=True)

    async def all_gone() -> bool:
        status = await asyncio.to_thread(soak.target.status)
        return not status["rooms"] and not status["sockets"]

    await wait_until(all_gone, 20)
    await asyncio.sleep(args.idle)
    left = await watcher.sample("after all left")
    status = await asyncio.to_thread(soak.target.status)
    leftover: dict[str, Any] = {
        "hub_rooms": status["rooms"],
        "hub_sockets": status["sockets"],
        "answers_running": status["answers"],
        "tcp_established": left["tcp"],
    }
    if args.redis:
        leftover["redis"] = await asyncio.to_thread(
            redis_leftovers,
            soak.target.env["PARLEY_LAYER_PREFIX"],
            [r.group_name for r in soak.rooms] + [r.control_group_name for r in soak.rooms],
        )
    return {
        "end_of_load": end_of_load,
        "caught_up": settled,
        "after_all_left": left,
        "leftover": leftover,
        "compared": compared,
    }


def slope(samples: list[dict[str, Any]]) -> float | None:
    """RSS trend over ``samples`` (least squares), MiB per minute."""
    if len(samples) < 3:
        return None
    ts = [s["t"] for s in samples]
    rs = [s["rss_mib"] for s in samples]
    mt, mr = statistics.fmean(ts), statistics.fmean(rs)
    den = sum((t - mt) ** 2 for t in ts)
    return round(sum((t - mt) * (r - mr) for t, r in zip(ts, rs, strict=True)) / den * 60, 3)


def memory_verdict(soak: Soak, end: dict[str, Any]) -> dict[str, Any]:
    """RSS after the warm-up against RSS at the end of the load (the bound), and the trend
    between: over all of it, and over its second half (where a leak-free server is flat)."""
    args = soak.args
    load = [s for s in soak.samples if s["phase"] in ("load", "end of load")]
    warmup = min(args.warmup, args.duration / 3)  # short runs: a third of the load
    after = [s for s in load if s["t"] >= warmup]
    warm = after[0]
    growth = end["rss_mib"] - warm["rss_mib"]
    bound = warm["rss_mib"] * args.max_growth / 100
    return {
        "warmup_s": warm["t"],
        "rss_after_warmup_mib": warm["rss_mib"],
        "rss_end_of_load_mib": end["rss_mib"],
        "rss_peak_mib": max(s["rss_mib"] for s in load),
        "growth_mib": round(growth, 2),
        "growth_pct": round(growth / warm["rss_mib"] * 100, 2),
        "bound_pct": args.max_growth,
        "bound_mib": round(bound, 2),
        "slope_mib_per_min": slope(after),
        "slope_second_half_mib_per_min": slope(after[len(after) // 2 :]),
        "ok": growth <= bound,
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def server_log_problems(path: Path) -> list[str]:
    """Tracebacks, errors and warnings the server logged."""
    lines = path.read_text(errors="replace").splitlines()
    return [line for line in lines if PROBLEM.search(line)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--clients", type=int, default=200, help="spread evenly over the rooms")
    parser.add_argument("--redis", action="store_true", help="channels-redis' pub/sub layer")
    parser.add_argument("--think", type=float, default=5.0, help="mean seconds between actions")
    parser.add_argument("--ask", type=float, default=0.2, help="share of sends that ask")
    parser.add_argument(
        "--cancel", type=float, default=0.1, help="chance an action stops a streaming answer"
    )
    parser.add_argument("--session", type=float, default=60.0, help="mean seconds connected")
    parser.add_argument(
        "--offline", type=float, nargs=2, default=(0.5, 8.0), help="seconds away, min max"
    )
    parser.add_argument(
        "--fresh", type=float, default=0.05, help="share of joins that start with nothing held"
    )
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds over which clients join")
    parser.add_argument(
        "--warmup", type=float, default=120.0, help="RSS baseline at this time (≤ duration/3)"
    )
    parser.add_argument(
        "--max-growth", type=float, default=10.0, help="RSS growth bound after the warm-up, %%"
    )
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between lines")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle after leaving")
    parser.add_argument("--no-compression", action="store_true", help="no permessage-deflate")
    parser.add_argument("--seed", default="parley")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()

    name = "parley-redis" if args.redis else "parley"
    env = {"PARLEY_BACKEND": "bench.soak.SoakBackend"}
    (target,) = make_targets([name], workdir(), extra_env=env)
    assert isinstance(target, Parley)
    owner, _ = target.django
    rooms, users = create_rooms(owner, args.rooms, args.clients)
    target.start(workdir())
    print(
        f"soak: {name}, {args.clients} clients in {args.rooms} rooms for {args.duration:g} s;"
        f" server pid {target.proc.pid}, log {target.log}",
        flush=True,
    )
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    soak = Soak(args, target, rooms, users)
    try:
        end = asyncio.run(soak_run(soak))
    finally:
        target.stop()
    result = build_result(soak, end, server_log_problems(target.log))
    result["started"] = started
    args.out.mkdir(parents=True, exist_ok=True)
    layer = "redis" if args.redis else "memory"
    path = args.out / f"soak-{time.strftime('%Y-%m-%d-%H%M')}-{layer}.json"
    path.write_text(json.dumps(result, indent=1))
    print_summary(soak, end, result)
    print(f"result: {path}")
    sys.exit(0 if result["ok"] else 1)


def build_result(soak: Soak, end: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Everything the run found, with the list of broken checks and bounds (``failures``)."""
    memory = memory_verdict(soak, end["end_of_load"])
    leftover = end["leftover"]
    redis_left = leftover.get("redis", {})
    failures = []
    if soak.errors:
        failures.append(f"{sum(soak.errors.values())} errors: {dict(soak.errors)}")
    if any(leftover[k] for k in ("hub_rooms", "hub_sockets", "answers_running", "tcp_established")):
        failures.append(f"left behind: {leftover}")
    if redis_left.get("group_subscribers") or redis_left.get("unexpected_channels"):
        failures.append(f"left in Redis: {redis_left}")
    if problems:
        failures.append(f"{len(problems)} problem lines in the server log")
    if not memory["ok"]:
        failures.append(
            f"RSS grew {memory['growth_mib']} MiB ({memory['growth_pct']} %) after the warm-up;"
            f" bound {memory['bound_pct']} % ({memory['bound_mib']} MiB)"
        )
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(soak.args).items()}
    return {
        "target": soak.target.name,
        "config": {**config, "out": str(soak.args.out)},
        "ok": not failures,
        "failures": failures,
        "memory": memory,
        "leftover": leftover,
        "compared": end["compared"],
        "errors": dict(soak.errors),
        "error_samples": soak.error_samples,
        "events": dict(soak.events),
        "ack_ms": {
            "p50": percentile(soak.ack_ms, 50),
            "p99": percentile(soak.ack_ms, 99),
            "max": max(soak.ack_ms, default=None),
        },
        "server_log_problems": problems[:50],
        "samples": soak.samples,
    }


def print_summary(soak: Soak, end: dict[str, Any], result: dict[str, Any]) -> None:
    args, events, memory, leftover = soak.args, soak.events, result["memory"], result["leftover"]
    load = [s for s in soak.samples if s["phase"] == "load"]
    rows = [
        ("load", f"{args.clients} clients, {args.rooms} rooms, {args.duration:g} s"),
        ("connections (joins)", f"{events['connects']:,} ({events['fresh_joins']:,} fresh)"),
        (
            "leaves: closed / dropped / with a send in flight",
            f"{events['leaves_closed']:,} / {events['leaves_dropped']:,} / "
            f"{events['leaves_unacked']:,}",
        ),
        ("messages sent (resends)", f"{events['sends']:,} ({events['resends']:,})"),
        ("deliveries in seq order", f"{events['deliveries']:,}"),
        (
            "answers: complete / stopped / other",
            f"{events['answers_complete']:,} / {events['answers_cancelled']:,} / "
            f"{events['answers_failed'] + events['answers_interrupted']:,}",
        ),
        ("answers checked delta by delta", f"{events['answers_checked_from_start']:,}"),
        (
            "expected refusals: queue full / nothing to stop",
            f"{events['error_frame_queue_full']:,} / {events['error_frame_nothing_to_cancel']:,}",
        ),
        (
            "ack p50 / p99 / max",
            " / ".join("–" if v is None else f"{v:.1f} ms" for v in result["ack_ms"].values()),
        ),
        ("compared with the database", ", ".join(f"{k} {v:,}" for k, v in end["compared"].items())),
        ("errors (must be 0)", f"{sum(soak.errors.values())} {dict(soak.errors) or ''}"),
        ("server log problems (must be 0)", f"{len(result['server_log_problems'])}"),
        (
            "left after all left: hub rooms / sockets / answers / TCP",
            f"{len(leftover['hub_rooms'])} / {leftover['hub_sockets']} / "
            f"{len(leftover['answers_running'])} / {leftover['tcp_established']}",
        ),
    ]
    if "redis" in leftover:
        redis_left = leftover["redis"]
        rows.append(
            (
                "left in Redis: group subscribers / channels besides the hub's / all",
                f"{redis_left['group_subscribers']} / {len(redis_left['unexpected_channels'])} / "
                f"{len(redis_left['channels'])}",
            )
        )
    rows += [
        (
            f"RSS after warm-up ({memory['warmup_s']:.0f} s) → end of load",
            f"{memory['rss_after_warmup_mib']:.1f} → {memory['rss_end_of_load_mib']:.1f} MiB"
            f" ({memory['growth_mib']:+.1f} MiB, {memory['growth_pct']:+.1f} %;"
            f" bound {memory['bound_pct']:g} % = {memory['bound_mib']:.1f} MiB)",
        ),
        (
            "RSS trend after warm-up (second half); peak; after all left",
            f"{memory['slope_mib_per_min']} ({memory['slope_second_half_mib_per_min']}) MiB/min;"
            f" {memory['rss_peak_mib']:.1f} MiB; {end['after_all_left']['rss_mib']:.1f} MiB",
        ),
        (
            "server CPU median (driver)",
            f"{statistics.median(s['server_cpu_pct'] for s in load):.0f} %"
            f" ({statistics.median(s['driver_cpu_pct'] for s in load):.0f} %)"
            if load
            else "–",
        ),
        ("verdict", "PASS" if result["ok"] else "FAIL: " + "; ".join(result["failures"])),
    ]
    width = max(len(title) for title, _ in rows)
    print()
    for title, value in rows:
        print(f"{title:<{width}}  {value}")


if __name__ == "__main__":
    main()
