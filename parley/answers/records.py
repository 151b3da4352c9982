"""The rows of assistant answers: opened ``streaming``, saved as they grow (the heartbeat),
finished, or marked ``interrupted`` when their process died; and what a backend is asked.

Synchronous; the runner calls them through :func:`parley.realtime.db.database_call` (or
:func:`~parley.realtime.db.knowledge_call` for :func:`answer_request`, whose search may rebuild
the index).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from ..backends.base import AssistantRequest, SearchContext, ToolCall, Turn
from ..conf import get_config
from ..contrib.orm import message_progress_update, messages_context, question_waiting_first
from ..exceptions import AssistantBusy, NothingToRegenerate
from ..knowledge.index import Retrieval, knowledge_about, knowledge_search
from ..models import Message, Room, ToolRun
from ..rooms.selectors import room_members
from ..rooms.services import message_store
from ..tools.approvals import approvals_cancel, tool_runs_orphaned
from ..tools.records import tool_runs_open
from ..usage.metering import Meter, tokens_estimate, usage_record

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User


logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset(
    {
        Message.Status.COMPLETE,
        Message.Status.CANCELLED,
        Message.Status.FAILED,
        Message.Status.INTERRUPTED,
    }
)


def answer_open(
    *,
    room: Room,
    reply_to: Message,
    worker: str,
    model: str = "",
    version_of: Message | None = None,
) -> tuple[Message, list[Message]]:
    """Open the room's assistant answer to ``reply_to`` (status ``streaming``); returns it,
    and the room's answer of a dead process that had to be closed first (``[]`` or one).

    The database enforces one streaming answer per room, whichever process runs it: a room
    that has one raises :class:`AssistantBusy`, unless that answer's process stopped writing
    heartbeats (:func:`answers_mark_stale`), when it is closed as ``interrupted`` and the new
    one opens. So does a room with questions waiting from before ``reply_to``: they are
    answered first (parley/answers/queue.py). The common case costs a look at the room's
    queue (an index of waiting questions only) and the two writes of the new row. ``model`` is
    the answering model's name, as its backend gives it before it answers; ``version_of``
    the first answer to ``reply_to``, when this one answers it again.
    """
    if question_waiting_first(room_id=room.pk, before=reply_to.seq) is not None:
        raise AssistantBusy("Questions asked before this one are waiting for their answers.")
    insert = functools.partial(
        _answer_insert,
        room=room,
        reply_to=reply_to,
        worker=worker,
        model=model,
        version_of=version_of,
    )
    answer = insert()
    if answer is not None:
        return answer, []
    stale = answers_mark_stale(room=room)
    answer = insert() if stale else None
    if answer is None:  # alive, or another process opened one in the meantime
        raise AssistantBusy("The assistant is already answering in this room.")
    return answer, stale


def _answer_insert(
    *, room: Room, reply_to: Message, worker: str, model: str, version_of: Message | None
) -> Message | None:
    """The new streaming answer, or ``None`` if the room has one (see :func:`message_store`)."""
    now = timezone.now()
    answer = Message(
        room=room,
        role=Message.Role.ASSISTANT,
        text="",
        status=Message.Status.STREAMING,
        reply_to=reply_to,
        worker=worker,
        model=model[:200],
        version_of=version_of,
        created_at=now,
        updated_at=now,
    )
    return answer if message_store(answer) else None


def answer_to_regenerate(*, room: Room, answer_id: int) -> tuple[Message, Message]:
    """The question that the room's finished answer ``answer_id`` answers, and the first
    answer to it (which a new answer is a version of). Raises :class:`NothingToRegenerate`
    for anything else: no such answer in the room, one still streaming, one whose question
    is gone or was edited since (only the newest version of a question is answered again);
    :class:`AssistantBusy` while questions wait their turn."""
    answer = (
        Message.objects.select_related("reply_to")
        .filter(pk=answer_id, room=room, role=Message.Role.ASSISTANT)
        .exclude(status=Message.Status.STREAMING)
        .first()
    )
    if answer is None or answer.reply_to is None:
        raise NothingToRegenerate("That is not a finished answer of this room.")
    question = answer.reply_to
    newer = Message.objects.filter(
        room=room, version_of_id=question.version_of_id or question.pk, seq__gt=question.seq
    )
    if newer.exists():
        raise NothingToRegenerate(
            "That question was edited since: ask for the answer to its newest version."
        )
    if question_waiting_first(room_id=room.pk) is not None:
        raise AssistantBusy("Questions are waiting for their answers; regenerate after them.")
    first = answer if answer.version_of_id is None else answer.version_of
    assert first is not None  # a version's first answer goes only with the room
    return question, first


def answer_streaming(*, room: Room) -> Message | None:
    """The room's answer now streaming, if any."""
    return Message.objects.filter(room=room, status=Message.Status.STREAMING).first()


def answers_save_progress(*, texts: Mapping[int, str], alive: Collection[int] = ()) -> None:
    """A process's heartbeat for all its answers, in one transaction: the text so far of
    each answer in ``texts`` (``{id: text}``), and for ``alive``, whose text has not grown
    since, only the stamp. Only answers still streaming are written; the ``updated_at``
    stamp tells other processes that an answer's process is alive."""
    now = timezone.now()
    with transaction.atomic():
        if texts:
            message_progress_update(texts, now=now)
        if alive:
            Message.objects.filter(pk__in=alive, status=Message.Status.STREAMING).update(
                updated_at=now
            )


def answers_mark_stale(*, room: Room | None = None) -> list[Message]:
    """Mark ``interrupted`` the streaming answers (of ``room``, or everywhere) whose process
    has not written a heartbeat for ``ANSWER_STALE_AFTER`` seconds; returns those this call
    closed (every process watches: each answer is closed, and its usage estimated, once)."""
    cutoff = timezone.now() - timedelta(seconds=get_config().answer_stale_after)
    stale = Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=cutoff).exclude(
        tool_runs__status=ToolRun.Status.PENDING
    )  # paused: no process runs it
    if room is not None:
        stale = stale.filter(room=room)
    ids = list(stale.values_list("pk", flat=True))
    if not ids:
        return []
    ids = [
        pk
        for pk in ids
        if Message.objects.filter(pk=pk, status=Message.Status.STREAMING).update(
            status=Message.Status.INTERRUPTED,
            error="The server generating this answer stopped.",
            updated_at=timezone.now(),
        )
    ]
    if not ids:
        return []
    tool_runs_orphaned(answer_ids=ids)
    rows = Message.objects.select_related("author", "room", "reply_to").filter(pk__in=ids)
    closed = list(rows)
    for answer in closed:  # what the dead process had not stored of it, at the least
        question = answer.reply_to.text if answer.reply_to else ""
        meter = Meter(tokens_estimate(question), tokens_estimate(answer.text), True, 1)
        usage_record(answer=answer, room=answer.room, meter=meter)
    return closed


def answer_finish(
    *,
    answer: Message,
    text: str,
    status: str,
    error: str = "",
    model: str = "",
    called_tools: bool = False,
    meter: Meter | None = None,
    first_usage: bool = False,
    asker_id: int | None = None,
    sources: list[dict[str, str]] | None = None,
) -> Message:
    """Close ``answer`` with its final text and a terminal status (and the model's name,
    if its server gave one, and the ``sources`` it was given, if it got that far: see
    :func:`answer_sources`); returns it as stored (the row is written, and the instance
    changed to match it, without reading it back); then the tokens of ``meter`` are added
    to its usage (``first_usage``: none is stored yet; ``asker_id``: see
    :func:`~parley.usage.metering.usage_record`). An answer that ``called_tools`` has its
    calls not run yet closed as ``cancelled``."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"{status!r} is not a terminal status")
    if called_tools:  # and the done frame shows its steps as they ended
        approvals_cancel(answer=answer)
        answer.tool_steps = list(answer.tool_runs.select_related("decided_by"))
    answer.text, answer.status, answer.error = text, status, error[:500]
    answer.model = model[:200] or answer.model
    answer.updated_at = timezone.now()
    answer.sources = sources if sources is not None else answer.sources
    Message.objects.filter(pk=answer.pk).update(
        text=answer.text,
        status=status,
        error=answer.error,
        model=answer.model,
        updated_at=answer.updated_at,
        sources=answer.sources,
    )
    if meter is not None:
        usage_record(
            answer=answer, room=answer.room, meter=meter, first=first_usage, asker_id=asker_id
        )
    return answer


def answer_sources(*, request: AssistantRequest) -> list[dict[str, str]]:
    """The knowledge passages ``request`` gives its backend, as an answer keeps them: what
    a feedback on it was judged with (parley/feedback), best first."""
    return [{"title": p.title, "url": p.url, "document": p.document} for p in request.passages]


def tool_round_store(
    *,
    answer: Message,
    calls: Sequence[ToolCall],
    round: int,
    text: str,
    meter: Meter,
    model: str,
    first_usage: bool,
    asker_id: int | None,
) -> list[ToolRun]:
    """Store the tool calls of ``answer``'s ``round``-th round (after ``text``), then the
    tokens of its requests so far (see :func:`answer_finish`)."""
    runs = tool_runs_open(answer=answer, calls=calls, round=round, text=text)
    usage_record(
        answer=answer,
        room=answer.room,
        meter=meter,
        model=model,
        first=first_usage,
        asker_id=asker_id,
    )
    return runs


def answer_request(*, answer: Message) -> AssistantRequest:
    """What the backend is asked for ``answer``: the room's recent finished messages before
    the question it answers (``answer.reply_to``), then the question, and the knowledge
    passages for the question in its conversation (``AssistantRequest.search_context``).

    Messages posted after the question are left out, even those stored before the answer
    took its number: they are not what was asked (another member's message must never be
    searched with the asker's rights). The question's conversation is the one it was first
    asked in: an edited question is asked with the messages before its first version, and
    an answer regenerated with those its first version had (:func:`messages_context`). In
    a shared room the passages are those every member may read (:func:`_passages_for`);
    ``withheld`` says when some were left out for that.
    """
    room = answer.room
    question = answer.reply_to
    limit = get_config().context_messages
    if question is None:  # deleted since: the conversation before the answer
        rows = messages_context(room_id=room.pk, before=answer.seq, limit=limit)
    else:
        rows = messages_context(
            room_id=room.pk, before=_first_seq(question), limit=max(limit - 1, 0)
        )
        author = question.author.get_username() if question.author is not None else ""
        rows.append((question.role, question.text, author))
    turns = [
        Turn(role="assistant" if role == Message.Role.ASSISTANT else "user", content=text,
             author=author)
        for role, text, author in rows
    ]  # fmt: skip
    asker = question.author if question is not None else None
    request = AssistantRequest(
        turns=turns, room=room.title, user=asker.get_username() if asker else ""
    )
    if question is None:  # deleted since: nothing to search for
        return request
    audience = room_members(room=room) if room.kind == Room.Kind.SHARED else []
    retrieval = _passages_for(
        query=question.text, context=request.search_context, user=asker, audience=audience
    )
    try:
        about = knowledge_about(user=asker, audience=audience)
    except Exception:
        logger.exception("the site's introduction could not be read; answering without it")
        about = None
    return replace(
        request, passages=tuple(retrieval.passages), withheld=retrieval.withheld, about=about
    )


def _first_seq(message: Message) -> int:
    """The seq of the first version of ``message`` (its own, unless it is a later one)."""
    if message.version_of_id is None:
        return message.seq
    return Message.objects.values_list("seq", flat=True).get(pk=message.version_of_id)


def _passages_for(
    *, query: str, context: SearchContext, user: _User | None, audience: list[_User]
) -> Retrieval:
    """The knowledge passages for ``query`` (in the light of ``context``, see
    :func:`knowledge_search`) that ``user`` may read and every user of ``audience`` too (in
    a shared room, its current members: whatever is posted in a room is disclosed to all its
    members, and to those invited later, who read its history). A broken index costs the
    answer its passages, not the answer itself."""
    try:
        return knowledge_search(query=query, context=context, user=user, audience=audience)
    except Exception:
        logger.exception("knowledge search failed; answering without passages")
        return Retrieval(passages=[])
