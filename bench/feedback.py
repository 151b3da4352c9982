#!/usr/bin/env python3
"""What feedback costs: the read that puts one's own ratings on a history page, against the
page itself; and how fast ``parley_feedback_export`` writes.

Sets Django up on a temporary SQLite database with the example project's settings, fills a
room with ``--answers`` questions and finished answers (each a few paragraphs), rates every
other one, then times, ``--repeat`` times each: ``messages_after`` and the payloads of a
history page (what ``resume`` costs before feedback), and ``feedback_mine`` for the page's
answers (the one read feedback adds, on the database thread). Then it exports
``--rows`` feedback rows (answers regenerated, half rated up, half down) as records and as
pairs, and prints lines a second and the peak of traced Python memory.

    .venv/bin/python bench/feedback.py
    .venv/bin/python bench/feedback.py --answers 50 --rows 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSWER = "A paragraph of an answer, as a model writes it, with a [link](/docs/x.md). " * 12


def setup_django(workdir: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
    os.environ.setdefault("DEBUG", "true")  # as `make run`: no SECRET_KEY needed
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(repeat: int, call) -> float:
    """The median milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=25, help="answers in the history page")
    parser.add_argument("--rows", type=int, default=5000, help="feedback rows to export")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        setup_django(Path(tmp))
        run(args)


def run(args: argparse.Namespace) -> None:
    # Django is set up only now: these import the app's models.
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from parley.feedback.selectors import feedback_mine
    from parley.models import Feedback, Message, Room
    from parley.rooms.payloads import message_payload
    from parley.rooms.selectors import messages_after

    user = get_user_model().objects.create_user("bench", password="x")
    room = Room.objects.create(title="Bench", owner=user)
    page = []
    for i in range(args.answers):
        question = Message.objects.create(room=room, seq=2 * i + 1, role="user", author=user,
                                          text=f"Question {i}?")  # fmt: skip
        page.append(Message.objects.create(room=room, seq=2 * i + 2, role="assistant",
                                           reply_to=question, text=ANSWER))  # fmt: skip
    Feedback.objects.bulk_create(
        Feedback(answer=a, user=user, rating="up", answer_status="complete") for a in page[::2]
    )
    ids = [a.pk for a in page]

    def history_page() -> None:
        messages, _ = messages_after(room=room, after=0, limit=2 * args.answers)
        [message_payload(m) for m in messages]

    page_ms = timed(args.repeat, history_page)
    mine_ms = timed(args.repeat, lambda: feedback_mine(answer_ids=ids, user=user, visitor=None))
    print(f"history page of {2 * args.answers} messages: {page_ms:.2f} ms (median); "
          f"feedback_mine for its {args.answers} answers: {mine_ms:.2f} ms "
          f"(+{100 * mine_ms / page_ms:.0f} %)")  # fmt: skip

    made = []
    for i in range(args.rows // 2):
        question = Message(room=room, seq=10**6 + 3 * i, role="user", author=user, text=f"Q{i}")
        made.append(question)
    Message.objects.bulk_create(made, batch_size=500)
    questions = list(Message.objects.filter(seq__gte=10**6).order_by("seq"))
    firsts = Message.objects.bulk_create(
        [Message(room=room, seq=q.seq + 1, role="assistant", reply_to=q, text=ANSWER)
         for q in questions], batch_size=500,
    )  # fmt: skip
    seconds = Message.objects.bulk_create(
        [Message(room=room, seq=q.seq + 2, role="assistant", reply_to=q, text=ANSWER,
                 version_of=f) for q, f in zip(questions, firsts, strict=True)], batch_size=500,
    )  # fmt: skip
    rated = [(first, "down") for first in firsts] + [(second, "up") for second in seconds]
    Feedback.objects.bulk_create(
        [Feedback(answer=a, user=user, rating=r, question=a.reply_to.text, answer_text=a.text,
                  answer_status="complete") for a, r in rated],
        batch_size=500,
    )  # fmt: skip
    total = Feedback.objects.count()
    for label, extra in (("records", ()), ("pairs", ("--pairs",))):
        tracemalloc.start()
        started = time.perf_counter()
        out = StringIO()
        call_command("parley_feedback_export", *extra, stdout=out, stderr=StringIO())
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        lines = out.getvalue().count("\n")
        print(f"export {label}: {lines} lines from {total} rows in {elapsed:.2f} s "
              f"({lines / elapsed:,.0f} lines/s); traced peak {peak / 2**20:.1f} MiB "
              f"(the output itself: {len(out.getvalue()) / 2**20:.1f} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
