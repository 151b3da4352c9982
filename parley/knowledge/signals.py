"""Keep registered models' passages in step with their objects: re-index an object when it
is saved, remove its passages when it is deleted, after the transaction commits (a
rolled-back change is never indexed, and a failure to index never fails the save).

Bulk operations (``QuerySet.update``, ``bulk_create``) send no signals: run
``manage.py parley_index`` after them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .registry import registration_get
from .sources import object_document
from .store import document_remove, document_store


def object_reindex(*, label: str, pk: Any) -> None:
    """Store the object's passages anew, or remove them if it is gone or no longer in its
    registration's queryset."""
    registration = registration_get(label=label)
    if registration is None:
        return
    obj = registration.objects().filter(pk=pk).first()
    if obj is None:
        document_remove(source=label, key=str(pk))
    else:
        document_store(document=object_document(registration=registration, obj=obj))


# Connected for every model, when the app is ready (parley.apps): registering a model needs no
# connect of its own, and a model unregistered is ignored from then on.


@receiver(post_save, dispatch_uid="parley.knowledge.saved")
def _saved(sender: Any, instance: Any, raw: bool = False, using: str = "default", **_: Any) -> None:
    label = sender._meta.label_lower
    if raw or registration_get(label=label) is None:  # raw: loaddata, rows may be missing
        return
    transaction.on_commit(
        partial(object_reindex, label=label, pk=instance.pk), using=using, robust=True
    )


@receiver(post_delete, dispatch_uid="parley.knowledge.deleted")
def _deleted(sender: Any, instance: Any, using: str = "default", **_: Any) -> None:
    label = sender._meta.label_lower
    if registration_get(label=label) is None:
        return
    transaction.on_commit(
        partial(document_remove, source=label, key=str(instance.pk)), using=using, robust=True
    )
