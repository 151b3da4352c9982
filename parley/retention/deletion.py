"""What deleting a user does to the rooms they own and the messages they wrote: the
``on_delete`` rules of ``Room.owner`` and ``Message.author``.

Rules of the tables, run by Django's deletion collector, so that they hold however the user
goes: ``user.delete()``, a queryset's ``delete()``, the admin's delete action (whose
confirmation page lists what they will delete). A ``pre_delete`` receiver would come too
late: the collector has chosen what the cascade deletes before it sends the signal.
Migrations name these functions by their path: keep it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, cast

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.deletion import CASCADE, Collector

from ..conf import get_config

ERASURE_MODES = ("anonymise", "delete")


def erasure_mode() -> str:
    """``ERASURE["MESSAGES"]``, checked: a typo must not decide what a deletion keeps."""
    mode = get_config().erasure["MESSAGES"]
    if mode not in ERASURE_MODES:
        raise ImproperlyConfigured(
            f"PARLEY['ERASURE']['MESSAGES'] is {mode!r}: it must be one of {ERASURE_MODES}."
        )
    return str(mode)


def _deleted_pks(collector: Collector, model: type[models.Model]) -> set[Any]:
    """The primary keys of the ``model`` rows this deletion removes (every user of a
    queryset's delete is collected before any relation is followed)."""
    return {obj.pk for obj in collector.data.get(model, ())}


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    return cast("models.Field[Any, Any]", model._meta.get_field(name))


def room_owner_deleted(
    collector: Collector, field: models.Field[Any, Any], sub_objs: Any, using: str
) -> None:
    """The rooms of a deleted owner: a private one goes with them; a shared one passes to
    its longest-standing other member (the first who joined), and goes only when nobody
    else is left in it."""
    user_model = get_user_model()
    leaving = _deleted_pks(collector, user_model)
    membership = apps.get_model("parley", "Membership")
    doomed: list[Any] = []
    heirs: dict[Any, list[models.Model]] = defaultdict(list)
    for room in sub_objs:
        heir = None
        if room.kind == "shared":
            heir = (
                membership._default_manager.using(using)
                .filter(room_id=room.pk)
                .exclude(user_id__in=leaving)
                .order_by("joined_at", "pk")
                .values_list("user_id", flat=True)
                .first()
            )
        if heir is None:
            doomed.append(room.pk)
        else:
            heirs[heir].append(room)
    if doomed:
        gone = field.model._default_manager.using(using).filter(pk__in=doomed)
        CASCADE(collector, field, gone, using)
    users = user_model._default_manager.using(using).in_bulk(list(heirs))
    for heir, kept in heirs.items():
        collector.add_field_update(field, users[heir], kept)


def message_author_deleted(
    collector: Collector, field: models.Field[Any, Any], sub_objs: Any, using: str
) -> None:
    """The messages of a deleted user, by ``ERASURE["MESSAGES"]``: ``"anonymise"`` keeps
    them with no author and no client id; ``"delete"`` deletes them and every answer to
    them (an answer quotes and paraphrases its question)."""
    if erasure_mode() == "delete":
        CASCADE(collector, field, sub_objs, using)
        messages = field.model._default_manager.using(using)
        answers = messages.filter(role="assistant", reply_to__in=sub_objs)
        CASCADE(collector, _field(field.model, "reply_to"), answers, using)
        return
    # The client id first: it is unique per room among author-less messages (a visitor's),
    # and two deleted members may have used the same one. Updates run in the order added.
    collector.add_field_update(_field(field.model, "client_id"), "", sub_objs)
    collector.add_field_update(field, None, sub_objs)
