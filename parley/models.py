from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from .conf import get_config
from .retention.deletion import message_author_deleted, room_owner_deleted


def new_public_id() -> str:
    """A room's id in URLs: 128 random bits, so room addresses cannot be guessed."""
    return secrets.token_urlsafe(16)


class Visitor(models.Model):
    """Someone who is not logged in, talking to the assistant in conversations of their own
    (``PARLEY["VISITORS"]``): no user of the site, which Parley never creates.

    A visitor is found again by its ``public_id``, which the session it was made in keeps,
    by the signed id an embed on another origin keeps
    (:func:`parley.visitors.services.visitor_token`), or by the ``identity`` a host site
    signed for it. Logging in carries its conversation over to the account (``user``); it
    has none of its own afterwards.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    identity = models.CharField(
        max_length=150, blank=True, help_text="The id a host site signed for this visitor."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,  # carried over, it is done; set free, its token finds it
        related_name="+",
        help_text="The account its conversations were carried over to when it logged in.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["identity"], condition=~Q(identity=""), name="parley_identity_once"
            )
        ]

    def __str__(self) -> str:
        return f"visitor {self.public_id[:8]}…"


class Room(models.Model):
    """A conversation with the assistant: private (its owner alone, or one visitor's) or
    shared (members)."""

    class Kind(models.TextChoices):
        PRIVATE = "private", "Private"
        SHARED = "shared", "Shared"

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    title = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PRIVATE)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=room_owner_deleted,  # private: deleted; shared: to the next member
        related_name="parley_owned_rooms",
    )
    visitor = models.ForeignKey(
        Visitor,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rooms",
        help_text="The visitor whose private conversation it is (then it has no owner).",
    )
    # db_default too: the processes of a rolling deploy still running the code before this
    # column insert rows without it.
    widget = models.BooleanField(
        default=False, db_default=False, help_text="Opened from the embedded chat (<parley-chat>)."
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="Membership",
        through_fields=("room", "user"),
        related_name="parley_rooms",
    )
    backend = models.CharField(
        max_length=64, default="default", help_text="Alias in PARLEY['BACKENDS']."
    )
    last_seq = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(owner__isnull=False) | Q(visitor__isnull=False),
                name="parley_room_has_owner_or_visitor",
            ),
            # One conversation per visitor, however many widgets ask for it at once.
            models.UniqueConstraint(
                fields=["visitor"],
                condition=Q(visitor__isnull=False),
                name="parley_one_conversation_per_visitor",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def group_name(self) -> str:
        """Channel-layer group every socket of the room joins."""
        return f"{get_config().group_prefix}.room.{self.pk}"

    @property
    def control_group_name(self) -> str:
        """Channel-layer group of the room's running answer (cancel, snapshot requests)."""
        return f"{get_config().group_prefix}.control.{self.pk}"


class Membership(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="parley_memberships"
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="parley_member_once")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"


class Invitation(models.Model):
    """An offer to join a shared room, which its invitee accepts or declines. Until they
    accept they are no member: they see the room's title and who invited them, nothing of
    its messages. Accepting makes a :class:`Membership` (and shows them the whole history).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invitations")
    invitee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="parley_invitations"
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "invitee"],
                condition=Q(status="pending"),
                name="parley_invited_once",
            )
        ]
        indexes = [models.Index(fields=["invitee", "status"], name="parley_invitations_open")]

    def __str__(self) -> str:
        return f"{self.invitee} to {self.room} ({self.status})"


class Message(models.Model):
    """One message of a room. ``seq`` numbers a room's messages 1, 2, 3… without gaps."""

    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=message_author_deleted,  # ERASURE["MESSAGES"]
        related_name="parley_messages",
    )
    text = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error = models.CharField(max_length=500, blank=True)
    client_id = models.CharField(max_length=64, blank=True)
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    worker = models.CharField(
        max_length=100, blank=True, help_text="The server process generating this answer."
    )
    waiting = models.BooleanField(
        default=False,
        db_default=False,  # as Room.widget: rows inserted by the code before this column
        help_text="A question waiting for the answer before it to end (the room's queue).",
    )
    version_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="versions",
        help_text="The first version of this message, if it is a later one (an answer "
        "regenerated, a question edited).",
    )
    model = models.CharField(
        max_length=200,
        blank=True,
        default="",
        db_default="",  # as waiting
        help_text="The model that wrote this answer, as its backend or server named it.",
    )
    # Null, not a list by default: the processes of a rolling deploy still running the code
    # before this column insert rows without it (and None says "not recorded").
    sources = models.JSONField(
        null=True,
        blank=True,
        help_text="The passages its backend was given: [{title, url, document}].",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # An answer's tool calls, when read with it (a Prefetch's to_attr; not a column).
    tool_steps: list[ToolRun]

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="parley_seq_unique"),
            models.UniqueConstraint(
                fields=["room", "author", "client_id"],
                condition=~Q(client_id=""),
                name="parley_client_id_once",
            ),
            # A visitor's messages have no author (NULLs are never equal in the one above).
            models.UniqueConstraint(
                fields=["room", "client_id"],
                condition=~Q(client_id="") & Q(author__isnull=True),
                name="parley_anonymous_client_id_once",
            ),
            models.UniqueConstraint(
                fields=["room"],
                condition=Q(status="streaming"),
                name="parley_one_answer_per_room",
            ),
        ]
        indexes = [
            models.Index(
                fields=["room", "seq"], condition=Q(waiting=True), name="parley_waiting_questions"
            )
        ]

    def __str__(self) -> str:
        return f"{self.room} #{self.seq} ({self.role})"


class ToolRun(models.Model):
    """One call of a tool by an answer (docs/tools.md): what the model asked, whose
    question it ran for, what came of it. The audit, read in the admin."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"  # the tool raised
        INVALID = "invalid", "Invalid"  # no such tool, or arguments that do not fit it
        REFUSED = "refused", "Refused"  # the asker, or a member of the room, may not
        CANCELLED = "cancelled", "Cancelled"  # the answer stopped first, or while it ran
        QUEUED = "queued", "Queued"  # stored, not looked at yet (an earlier call waits)
        PENDING = "pending", "Waiting for approval"
        APPROVED = "approved", "Approved"  # about to run
        DENIED = "denied", "Denied"
        EXPIRED = "expired", "Expired"  # no one decided in time: denied

    answer = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tool_runs")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="tool_runs")
    asker = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="parley_tool_runs",
        help_text="Whose question the answer replies to: the tool ran with their rights. "
        "Empty for a visitor.",
    )
    call_id = models.CharField(max_length=100, help_text="The model's id for the call.")
    tool = models.CharField(max_length=64)
    arguments = models.TextField(blank=True, help_text="The JSON the model wrote, as it was.")
    round = models.PositiveSmallIntegerField(help_text="Which round of calls of the answer.")
    position = models.PositiveIntegerField(
        help_text="How many characters of the answer's text came before the call."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    result = models.TextField(blank=True, help_text="What the model was sent back.")
    error = models.TextField(blank=True, help_text="For the log: what the tool raised.")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds the tool ran.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The approval of a tool that changes something (confirm=True).
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Until when the call waits for approval."
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="parley_tool_decisions",
        help_text="Who approved or denied the call.",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    approved_arguments = models.TextField(
        blank=True, help_text="The arguments as the approver edited them, if they did."
    )
    by_grant = models.BooleanField(
        default=False, help_text="Approved by the asker's standing 'always allow'."
    )

    class Meta:
        ordering = ["answer", "id"]
        verbose_name = "tool call"
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=models.Q(status="pending"),
                name="parley_toolrun_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tool} for answer {self.answer_id} ({self.status})"


class ToolGrant(models.Model):
    """A user's standing approval of a tool: their calls of it run without asking."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="parley_tool_grants"
    )
    tool = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tool"], name="parley_toolgrant_unique")
        ]
        verbose_name = "tool always allowed"
        verbose_name_plural = "tools always allowed"

    def __str__(self) -> str:
        return f"{self.tool} for {self.user_id}"


class Usage(models.Model):
    """What one answer cost: the tokens its model read and wrote over all its rounds, as
    the model's server counted them, or ``estimated`` where it did not (an answer stopped
    or failed before the counts came, a backend that counts none). Kept when the answer is
    deleted: the bill outlives the conversation (docs/operations.md)."""

    answer = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="parley_usage",
        help_text="Who asked: the author of the question it answers.",
    )
    visitor = models.ForeignKey(
        Visitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    backend = models.CharField(max_length=64, help_text="Alias in PARLEY['BACKENDS'].")
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    estimated = models.BooleanField(
        default=False, help_text="Some of its tokens were estimated, not counted by the model."
    )
    cost = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="By USAGE['PRICES'] when it was recorded; empty: no price for its model.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "usage"
        indexes = [models.Index(fields=["user", "created_at"], name="parley_usage_user")]

    def __str__(self) -> str:
        return f"{self.prompt_tokens}+{self.completion_tokens} tokens of {self.model or '?'}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Quota(models.Model):
    """How much the assistant may answer someone in a day or a month (docs/operations.md).

    A quota is a user's own, a group's (each of its members gets that much), or, with
    neither, everyone's who has none of their own or of a group, visitors included. A
    user's own quotas replace their groups', which replace everyone's; every quota that
    applies must hold. One without limits exempts whom it applies to."""

    class Period(models.TextChoices):
        DAY = "day", "Day"
        MONTH = "month", "Month"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="parley_quotas",
    )
    group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="parley_quotas",
        help_text="Each member of the group gets this much.",
    )
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.DAY)
    max_answers = models.PositiveIntegerField(
        null=True, blank=True, help_text="Answers per period; empty: no limit."
    )
    max_tokens = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Tokens read and written per period; empty: no limit. An answer starts "
        "while any are left, so the last one may go past it.",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=True) | Q(group__isnull=True),
                name="parley_quota_user_or_group",
            ),
        ]

    def __str__(self) -> str:
        whose = self.user or (f"group {self.group}" if self.group_id else "everyone")
        limits = [
            f"{limit} {unit}"
            for limit, unit in ((self.max_answers, "answers"), (self.max_tokens, "tokens"))
            if limit is not None
        ]
        return f"{whose}: {', '.join(limits) or 'no limit'} per {self.period}"


class QuotaTally(models.Model):
    """What one person used of one quota in one period, counted by conditional ``UPDATE``
    statements that every server process shares (parley/usage/quotas.py)."""

    quota = models.ForeignKey(Quota, on_delete=models.CASCADE, related_name="tallies")
    subject = models.CharField(max_length=64, help_text="'user:<pk>' or 'visitor:<pk>'.")
    period_start = models.DateTimeField()
    answers = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["quota", "subject", "period_start"], name="parley_tally_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} from {self.period_start:%Y-%m-%d}: {self.answers} answers"


class Feedback(models.Model):
    """One person's verdict on one finished answer: thumbs up or down, with an optional
    comment (docs/operations.md, Feedback). Given by a member of the room (``user``) or by
    the visitor whose conversation it is (``visitor``); one per answer and person, changed
    in place when they change their mind, deleted when they take it back.

    It keeps a copy of what an evaluation reads (the question, the answer, its sources and
    tool steps, the room's backend alias and the model) as they were when it was given: an
    export needs no join, and says what was judged even if the question is deleted since.
    """

    class Rating(models.TextChoices):
        UP = "up", "Thumbs up"
        DOWN = "down", "Thumbs down"

    answer = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="parley_feedback",
    )
    visitor = models.ForeignKey(
        Visitor, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    rating = models.CharField(max_length=8, choices=Rating.choices)
    comment = models.TextField(blank=True)
    question = models.TextField(blank=True, help_text="The question the answer replies to.")
    answer_text = models.TextField(blank=True)
    answer_status = models.CharField(max_length=16, choices=Message.Status.choices)
    sources = models.JSONField(default=list, blank=True)
    tool_steps = models.JSONField(
        default=list, blank=True, help_text="[{tool, arguments, result, status}], in order."
    )
    backend = models.CharField(max_length=64, blank=True, help_text="The room's alias.")
    model = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    # The first version of its answer, when read for pairs (an annotation; not a column).
    exchange: int

    class Meta:
        ordering = ["-updated_at", "-pk"]
        verbose_name_plural = "feedback"
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, visitor__isnull=True)
                | Q(user__isnull=True, visitor__isnull=False),
                name="parley_feedback_by_one",
            ),
            models.UniqueConstraint(
                fields=["answer", "user"],
                condition=Q(user__isnull=False),
                name="parley_feedback_once",
            ),
            models.UniqueConstraint(
                fields=["answer", "visitor"],
                condition=Q(visitor__isnull=False),
                name="parley_visitor_feedback_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rating} on answer {self.answer_id}"


class KnowledgePassage(models.Model):
    """One passage of the knowledge index: a section of a document, as retrieval ranks it.

    ``source`` is ``"files"`` for documents read from ``KNOWLEDGE["FOLDERS"]``, or the label of
    a registered model (``"blog.article"``); ``document`` is the file's key
    (``"docs/backends.md"``) or the object's primary key.

    ``owner`` and ``permission`` are who may read it, computed when it is indexed from its
    registration's ``owner`` and ``permission``, so that a search filters by them with a
    precomputed mask before ranking, at a cost that does not depend on what the user may not
    read (parley/knowledge/permissions.py). The registration's current rules apply as well:
    a tightened rule applies at once, a loosened one after ``parley_index``.
    """

    source = models.CharField(max_length=100)
    document = models.CharField(max_length=255)
    position = models.PositiveIntegerField(help_text="Order of the passage in its document.")
    title = models.CharField(max_length=300, help_text="The heading path, e.g. 'Doc › Section'.")
    url = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    owner = models.CharField(
        max_length=64,
        blank=True,
        help_text="Primary key of the one user who may read it; '' when it has no owner.",
    )
    permission = models.CharField(
        max_length=255,
        blank=True,
        help_text="Model-level permission needed to read it ('app_label.codename'), or ''.",
    )
    vector = models.BinaryField(
        null=True,
        editable=False,
        help_text="Its embeddings, float16, by vector_model (dense retrieval).",
    )
    vector_model = models.CharField(
        max_length=100, blank=True, help_text="The embedding model of vector; '' without one."
    )

    class Meta:
        ordering = ["source", "document", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "document", "position"], name="parley_passage_once"
            )
        ]

    def __str__(self) -> str:
        return self.title


class KnowledgeVersion(models.Model):
    """One row whose ``stamp`` changes with every write to the knowledge index: each server
    process compares it with the stamp of the index it holds and rebuilds when they differ."""

    stamp = models.CharField(max_length=32)

    def __str__(self) -> str:
        return self.stamp


class Ticket(models.Model):
    """A WebSocket ticket that was issued and has not expired (``parley.auth.ticket_issue``).

    The signed ticket a client holds names this row by its ``nonce``; the row keeps what must
    not travel in a URL: the session the ticket was issued from (logging out of it ends the
    ticket) and the user's session auth hash then (a password change ends it), and how many
    sockets it may still open (one, unless issued for a load generator), counted down by one
    ``UPDATE`` that only one server process can win. Rows are pruned once expired.
    """

    nonce = models.CharField(max_length=32, unique=True)
    session_key = models.TextField(blank=True)
    auth_hash = models.CharField(max_length=128)
    uses_left = models.PositiveIntegerField(default=1)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"ticket {self.nonce[:6]}… ({self.uses_left} use(s) left)"
