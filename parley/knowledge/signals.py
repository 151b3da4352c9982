"""Keep registered models' passages in step with their objects: re-index an object when it
is saved, remove its passages when it is deleted, after the transaction commits (a
rolled-back change is never indexed, and a failure to index never fails the save).

Bulk operations (``QuerySet.update``, ``bulk_create``) send no signals: run
``manage.py parley_index`` after them.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .registry import Registration, registration_get

logger = logging.getLogger(__name__)


def object_reindex(*, label: str, pk: Any) -> None:
    """Store the object's passages anew, or remove them if it is gone or no longer in its
    registration's queryset."""
    from .sources import object_document
    from .store import document_remove, document_store

    registration = registration_get(label=label)
    if registration is None:
        return
    obj = registration.objects().filter(pk=pk).first()
    if obj is None:
        document_remove(source=label, key=str(pk))
    else:
        document_store(document=object_document(registration=registration, obj=obj))


def _saved(sender: Any, instance: Any, raw: bool = False, using: str = "default", **_: Any) -> None:
    if raw:  # loaddata: the object may refer to rows not loaded yet
        return
    transaction.on_commit(
        partial(object_reindex, label=sender._meta.label_lower, pk=instance.pk),
        using=using,
        robust=True,
    )


def _deleted(sender: Any, instance: Any, using: str = "default", **_: Any) -> None:
    from .store import document_remove

    transaction.on_commit(
        partial(document_remove, source=sender._meta.label_lower, key=str(instance.pk)),
        using=using,
        robust=True,
    )


def _uid(registration: Registration, kind: str) -> str:
    return f"parley.knowledge.{kind}.{registration.label}"


def registration_connect(*, registration: Registration) -> None:
    """Listen to saves and deletes of the registration's model."""
    model = registration.model
    post_save.connect(_saved, sender=model, weak=False, dispatch_uid=_uid(registration, "save"))
    post_delete.connect(
        _deleted, sender=model, weak=False, dispatch_uid=_uid(registration, "delete")
    )


def registration_disconnect(*, registration: Registration) -> None:
    """Stop listening to the registration's model."""
    post_save.disconnect(sender=registration.model, dispatch_uid=_uid(registration, "save"))
    post_delete.disconnect(sender=registration.model, dispatch_uid=_uid(registration, "delete"))
