from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html_join
from django.utils.text import Truncator

from .conf import get_config
from .models import (
    Feedback,
    Invitation,
    Membership,
    Message,
    Quota,
    QuotaTally,
    Room,
    ToolGrant,
    ToolRun,
    Usage,
    Visitor,
)
from .usage.selectors import usage_summaries


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "room"
    extra = 0
    raw_id_fields = ["user", "invited_by"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["title", "kind", "owner", "visitor", "backend", "last_seq", "created_at"]
    list_filter = ["kind", "widget", "backend"]
    search_fields = ["title", "public_id", "owner__username"]
    readonly_fields = ["public_id", "last_seq", "created_at"]
    raw_id_fields = ["owner", "visitor"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["room", "user", "invited_by", "joined_at"]
    search_fields = ["room__title", "user__username"]
    raw_id_fields = ["room", "user", "invited_by"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "role", "author", "status", "created_at"]
    list_filter = ["role", "status"]
    search_fields = ["text", "room__title", "author__username"]
    raw_id_fields = ["room", "author", "reply_to"]
    readonly_fields = ["seq", "created_at", "updated_at", "worker"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["room", "invitee", "invited_by", "status", "created_at", "answered_at"]
    list_filter = ["status"]
    search_fields = ["room__title", "invitee__username", "invited_by__username"]
    raw_id_fields = ["room", "invitee", "invited_by"]
    readonly_fields = ["created_at", "answered_at"]


class VisitorRoomInline(admin.TabularInline):
    model = Room
    fk_name = "visitor"
    extra = 0
    fields = ["title", "last_seq", "created_at"]
    readonly_fields = ["title", "last_seq", "created_at"]
    show_change_link = True


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    """Visitors who are not logged in, with their conversations (``PARLEY["VISITORS"]``)."""

    list_display = ["public_id", "identity", "created_at", "last_seen_at", "user"]
    list_filter = [("user", admin.EmptyFieldListFilter)]
    search_fields = ["public_id", "identity"]
    readonly_fields = ["public_id", "created_at", "last_seen_at"]
    raw_id_fields = ["user"]
    inlines = [VisitorRoomInline]


@admin.register(ToolRun)
class ToolRunAdmin(admin.ModelAdmin):
    """The audit of the assistant's tool calls: read only, as an audit is."""

    list_display = ["tool", "asker", "room", "status", "decided_by", "duration", "created_at"]
    list_filter = ["status", "tool", "by_grant"]
    search_fields = ["tool", "arguments", "asker__username", "room__title"]
    raw_id_fields = ["answer", "room", "asker", "decided_by"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ToolRun | None = None) -> bool:
        return False


@admin.register(ToolGrant)
class ToolGrantAdmin(admin.ModelAdmin):
    """Users' standing approvals ("always allow"): delete one to have that user asked again."""

    list_display = ["tool", "user", "created_at"]
    list_filter = ["tool"]
    search_fields = ["tool", "user__username"]
    raw_id_fields = ["user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ToolGrant | None = None) -> bool:
        return False


class QuotaTallyInline(admin.TabularInline):
    model = QuotaTally
    extra = 0
    fields = readonly_fields = ("subject", "period_start", "answers", "tokens")
    ordering = ["-period_start", "subject"]
    can_delete = False
    max_num = 0  # counted by the server, never typed in


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    """How much the assistant answers whom (docs/operations.md, "Usage and quotas")."""

    list_display = ["__str__", "user", "group", "period", "max_answers", "max_tokens"]
    list_filter = ["period", ("group", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "group__name"]
    raw_id_fields = ["user"]
    inlines = [QuotaTallyInline]


@admin.register(Usage)
class UsageAdmin(admin.ModelAdmin):
    """Every answer's tokens and cost, with their totals per user, room and model for what
    the filters select above the list."""

    list_display = [
        "created_at", "user", "visitor", "room", "model",
        "prompt_tokens", "completion_tokens", "estimated", "cost",
    ]  # fmt: skip
    list_filter = ["backend", "model", "estimated"]
    search_fields = ["user__username", "room__title", "model"]
    raw_id_fields = ["answer", "room", "user", "visitor"]
    date_hierarchy = "created_at"
    change_list_template = "admin/parley/usage/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Usage | None = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is None or "cl" not in context:  # a redirect or an error page
            return response
        context["summaries"] = usage_summaries(context["cl"].queryset)
        context["currency"] = get_config().usage["CURRENCY"]
        return response


# The detail of a feedback, all of it read only.
FEEDBACK_FIELDS = (
    "rating", "comment", "rater", "room", "answer", "backend", "model", "answer_status",
    "question", "answer_text", "sources_list", "tool_steps_list", "created_at", "updated_at",
)  # fmt: skip


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Members' and visitors' verdicts on answers, with what was judged: read only, as
    given (docs/operations.md, Feedback)."""

    list_display = [
        "rating",
        "comment_excerpt",
        "answer_excerpt",
        "room",
        "rater",
        "model",
        "updated_at",
    ]
    list_filter = ["rating", "model", "backend", "answer_status"]
    search_fields = ["comment", "question", "answer_text"]
    date_hierarchy = "updated_at"
    fields = readonly_fields = FEEDBACK_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Feedback | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        return super().get_queryset(request).select_related("answer__room", "user", "visitor")

    @admin.display(description="comment")
    def comment_excerpt(self, obj: Feedback) -> str:
        return Truncator(obj.comment).chars(80)

    @admin.display(description="answer")
    def answer_excerpt(self, obj: Feedback) -> str:
        return Truncator(obj.answer_text).chars(80)

    @admin.display(description="room")
    def room(self, obj: Feedback) -> Room:
        return obj.answer.room

    @admin.display(description="by")
    def rater(self, obj: Feedback) -> str:
        return str(obj.user) if obj.user is not None else str(obj.visitor)

    @admin.display(description="sources")
    def sources_list(self, obj: Feedback) -> str:
        return (
            format_html_join(
                "",
                "<p>{} <code>{}</code> {}</p>",
                (
                    (s.get("title", ""), s.get("document", ""), s.get("url", ""))
                    for s in obj.sources
                ),
            )
            or "–"
        )

    @admin.display(description="tool steps")
    def tool_steps_list(self, obj: Feedback) -> str:
        return format_html_join(
            "",
            "<p><code>{}</code> ({}): {} → {}</p>",
            ((step.get("tool", ""), step.get("status", ""), step.get("arguments", ""),
              Truncator(step.get("result", "")).chars(300)) for step in obj.tool_steps),
        ) or "–"  # fmt: skip
