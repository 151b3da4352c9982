"""Parley's pages; include them at any prefix (``path("chat/", include("parley.urls"))``)."""

from django.urls import path

from . import views
from .visitors.views import chat_session

app_name = "parley"
urlpatterns = [
    path("", views.room_list, name="rooms"),
    path("rooms/<str:public_id>/", views.room_detail, name="room"),
    path("rooms/<str:public_id>/invite/", views.room_invite, name="invite"),
    path("rooms/<str:public_id>/leave/", views.room_leave, name="leave"),
    path("rooms/<str:public_id>/export.md", views.room_export, {"fmt": "md"}, name="export_md"),
    path(
        "rooms/<str:public_id>/export.json", views.room_export, {"fmt": "json"}, name="export_json"
    ),
    path("rooms/<str:public_id>/rename/", views.room_rename, name="rename"),
    path("rooms/<str:public_id>/delete/", views.room_delete, name="delete"),
    path(
        "rooms/<str:public_id>/members/<int:user_id>/remove/",
        views.room_member_remove,
        name="remove-member",
    ),
    path(
        "invitations/<int:invitation_id>/accept/",
        views.invitation_answer,
        {"accept": True},
        name="invitation-accept",
    ),
    path(
        "invitations/<int:invitation_id>/decline/",
        views.invitation_answer,
        {"accept": False},
        name="invitation-decline",
    ),
    path("knowledge/<path:key>", views.knowledge_document, name="knowledge"),
    path("status/", views.status, name="status"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("chat/session/", chat_session, name="chat-session"),
]
