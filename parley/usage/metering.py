"""An answer's tokens, counted or estimated, and what they cost.

An answer may make several requests of its model (one per round of tool calls) and may
pause for an approval and go on in another process: each process adds what its rounds
used to the answer's one :class:`~parley.models.Usage` row. A request that ends without
the server's counts (stopped, failed, or a backend that counts nothing) is estimated from
its characters and the row flagged, so that a stopped answer is never free.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce

from ..backends.base import AssistantRequest, ToolCall, Usage
from ..conf import get_config
from ..models import Message, Room, Visitor
from ..models import Usage as UsageRow
from .quotas import quota_subject, quotas_add_tokens

logger = logging.getLogger(__name__)


def tokens_estimate(text: str) -> int:
    """The tokens ``text`` is likely to be, at ``USAGE["CHARS_PER_TOKEN"]`` characters each
    (about 4 for English with OpenAI's tokenizers)."""
    chars_per_token: float = get_config().usage["CHARS_PER_TOKEN"]
    return math.ceil(len(text) / chars_per_token)


def _request_text(request: AssistantRequest) -> str:
    """What a request sends the model besides the backend's own system prompt."""
    parts = [turn.content for turn in request.turns]
    parts += [passage.text for passage in request.passages]
    for round_ in request.rounds:
        parts.append(round_.text)
        parts += [call.arguments for call in round_.calls]
        parts += round_.results
    parts += [json.dumps(tool.parameters) + tool.description for tool in request.tools]
    return "\n".join(parts)


@dataclass
class Meter:
    """The tokens of one answer's requests that are not stored yet; ``totals`` are all
    it added, stored or not (for the answer's trace)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    requests: int = 0
    totals: tuple[int, int] = (0, 0)

    def add(
        self,
        counted: Usage | None,
        *,
        request: AssistantRequest,
        text: str,
        calls: list[ToolCall],
    ) -> None:
        """Add one request: the ``counted`` usage its server reported, or else an estimate
        from the request and what came back of it (``text`` and ``calls``)."""
        self.requests += 1
        if counted is not None:
            read, written = counted.prompt_tokens, counted.completion_tokens
        else:
            read = tokens_estimate(_request_text(request))
            written = tokens_estimate(text + "".join(c.name + c.arguments for c in calls))
            self.estimated = True
        self.prompt_tokens += read
        self.completion_tokens += written
        self.totals = (self.totals[0] + read, self.totals[1] + written)

    def take(self) -> Meter:
        """What is counted so far, leaving the meter empty (it was stored)."""
        taken = Meter(self.prompt_tokens, self.completion_tokens, self.estimated, self.requests)
        self.prompt_tokens = self.completion_tokens = self.requests = 0
        self.estimated = False
        return taken


def prices_problems() -> list[str]:
    """What is wrong with ``USAGE["PRICES"]`` (the system check ``parley.E007``): each entry
    a mapping of ``INPUT`` and ``OUTPUT`` to a number of at least 0."""
    problems = []
    for model, price in get_config().usage["PRICES"].items():
        if not isinstance(price, Mapping) or not set(price) <= {"INPUT", "OUTPUT"}:
            problems.append(f"USAGE['PRICES'][{model!r}] must map INPUT and OUTPUT to prices.")
            continue
        for key, value in price.items():
            try:
                valid = Decimal(str(value)) >= 0
            except InvalidOperation:
                valid = False
            if not valid or isinstance(value, bool):
                problems.append(
                    f"USAGE['PRICES'][{model!r}][{key!r}] is {value!r}: a price per million "
                    "tokens, a number of at least 0, is needed."
                )
    return problems


def price_for(model: str) -> dict[str, str] | None:
    """The ``USAGE["PRICES"]`` entry for ``model``: its own, or the longest pattern ending in
    ``*`` that it starts with."""
    prices = get_config().usage["PRICES"]
    if model in prices:
        return dict(prices[model])
    patterns = [key for key in prices if key.endswith("*") and model.startswith(key[:-1])]
    return dict(prices[max(patterns, key=len)]) if patterns else None


def cost_of(*, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """What the tokens cost at ``model``'s prices (per million tokens); ``None`` without one."""
    price = price_for(model)
    if price is None:
        return None
    million = Decimal(1_000_000)
    cost = Decimal(str(price.get("INPUT", 0))) * prompt_tokens / million
    cost += Decimal(str(price.get("OUTPUT", 0))) * completion_tokens / million
    return cost.quantize(Decimal("0.000001"))


def usage_record(
    *,
    answer: Message,
    room: Room,
    meter: Meter,
    model: str = "",
    first: bool = False,
    asker_id: int | None = None,
) -> None:
    """Add ``meter``'s tokens to ``answer``'s usage row, with their cost, and to the tallies
    of its asker's quotas: ``asker_id``, who asked for it (a regeneration's), or else its
    question's author. ``first``: the answer has no row yet (one INSERT, no UPDATE).

    Its own transaction, after the answer's state is stored (finished, or a round of tool
    calls): what the row names may be deleted while the answer runs (the answer with its
    asker's messages, the room, the asker), and the usage is then recorded without it. It
    never fails the answer: what goes wrong is logged."""
    if not meter.requests:
        return
    try:
        _usage_record(
            answer=answer, room=room, meter=meter, model=model, first=first, asker_id=asker_id
        )
    except Exception:
        logger.exception("could not record the usage of answer %s", answer.pk)


def _usage_record(
    *, answer: Message, room: Room, meter: Meter, model: str, first: bool, asker_id: int | None
) -> None:
    model = (model or answer.model)[:200]
    cost = cost_of(
        model=model, prompt_tokens=meter.prompt_tokens, completion_tokens=meter.completion_tokens
    )
    if asker_id is None and not first:  # whom its row charges already
        rows = UsageRow.objects.filter(answer=answer)
        asker_id = rows.values_list("user_id", flat=True).first()
    if asker_id is None:  # read now: the author may be deleted, or anonymised, meanwhile
        questions = Message.objects.filter(pk=answer.reply_to_id or 0)
        asker_id = questions.values_list("author_id", flat=True).first()
    changes: dict[str, Any] = {
        "prompt_tokens": F("prompt_tokens") + meter.prompt_tokens,
        "completion_tokens": F("completion_tokens") + meter.completion_tokens,
    }
    if cost is not None:
        changes["cost"] = Coalesce(F("cost"), Decimal(0)) + cost
    if model:
        changes["model"] = model
    if meter.estimated:
        changes["estimated"] = True
    row = UsageRow(
        answer_id=answer.pk,
        room_id=room.pk,
        user_id=asker_id,
        visitor_id=room.visitor_id if asker_id is None else None,
        backend=room.backend,
        model=model,
        prompt_tokens=meter.prompt_tokens,
        completion_tokens=meter.completion_tokens,
        estimated=meter.estimated,
        cost=cost,
    )
    try:
        with transaction.atomic():
            if first or not UsageRow.objects.filter(answer=answer).update(**changes):
                row.save(force_insert=True)
    except IntegrityError:  # checked at the commit: something it names is gone
        _usage_orphan_save(row)
    subject = quota_subject(user_id=asker_id, visitor_id=room.visitor_id)
    if subject is not None:
        quotas_add_tokens(subject=subject, tokens=meter.prompt_tokens + meter.completion_tokens)


def _usage_orphan_save(row: UsageRow) -> None:
    """Save ``row`` without the answer, room, asker or visitor that were deleted."""
    row.pk = None
    for field, model in (
        ("answer_id", Message),
        ("room_id", Room),
        ("user_id", get_user_model()),
        ("visitor_id", Visitor),
    ):
        pk = getattr(row, field)
        if pk is not None and not model._default_manager.filter(pk=pk).exists():
            setattr(row, field, None)
    with transaction.atomic():
        row.save(force_insert=True)
