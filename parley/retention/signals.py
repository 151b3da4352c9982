"""A deleted user's answers stop: with ``ERASURE["MESSAGES"] = "delete"`` the answer being
written to their question goes with it (parley/retention/deletion.py), so whichever process
runs it is told to stop, as when its room is deleted."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from ..models import Message
from ..protocol import events
from ..realtime.access import group_send_from_thread
from .deletion import erasure_mode


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def _user_deleted(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    if erasure_mode() != "delete":
        return  # their questions stay, and so do the answers to them
    answering = Message.objects.using(using).filter(
        status=Message.Status.STREAMING, reply_to__author_id=instance.pk
    )
    for answer in answering.select_related("room"):
        group = answer.room.control_group_name
        stop = {**events.cancel_event(message_id=answer.pk, by="(author deleted)"), "group": group}
        transaction.on_commit(
            functools.partial(group_send_from_thread, group, stop), using=using, robust=True
        )
