"""Assistant answers: the runner (:mod:`.runner`), its rows (:mod:`.records`), the control
events that stop it or ask for its text (:mod:`.control`), its pauses for approval
(:mod:`.approvals`), and the stale-answer watch (:mod:`.stale`). The names below are the
package's face for the consumer and the lifespan.
"""

from __future__ import annotations

from .approvals import answer_decide, approvals_expire_due
from .control import answer_cancel, answer_cancel_for, answer_request_snapshot
from .queue import answer_ask, answer_regenerate, answers_resume_queues, question_withdraw
from .runner import WORKER_ID, StopReason, answer_generate, answers_running, answers_shutdown
from .stale import answers_interrupt_stale, answers_watch

__all__ = [
    "WORKER_ID",
    "StopReason",
    "answer_ask",
    "answer_cancel",
    "answer_cancel_for",
    "answer_decide",
    "answer_generate",
    "answer_regenerate",
    "answer_request_snapshot",
    "answers_interrupt_stale",
    "approvals_expire_due",
    "answers_resume_queues",
    "answers_running",
    "answers_shutdown",
    "answers_watch",
    "question_withdraw",
]
