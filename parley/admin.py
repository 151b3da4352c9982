from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import Invitation, Membership, Message, Room, ToolGrant, ToolRun, Visitor


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
