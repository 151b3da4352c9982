"""Who may read which passages.

Files of ``KNOWLEDGE["FOLDERS"]`` may be read by every user who may chat. A registered
model's passages need its registration's ``permission`` (a model-level permission, or a
callable asked object by object) and, with an ``owner`` option, to be the object's owner;
those of a model that is no longer registered may be read by nobody.

Every rule but the callable is known before a search: the index turns them into a mask of
the passages a user may read (:meth:`parley.knowledge.index.KnowledgeIndex.readable`), so
forbidden passages are never ranked and the cost of a search does not depend on them. A
callable is asked only for the few best candidates (:data:`parley.knowledge.index.WINDOW`),
their objects loaded in one query per source.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AnonymousUser

from ..conf import get_config
from .registry import registration_get
from .sources import FILES

if TYPE_CHECKING:
    # The site's AUTH_USER_MODEL: django-stubs' plugin expands this alias to it.
    from django.contrib.auth.models import _User


def objects_of(source: str, keys: Iterable[str]) -> dict[str, Any]:
    """The objects of ``source``'s registration with these primary keys (one query), by key;
    deleted objects and those outside the registration's queryset are left out."""
    registration = registration_get(label=source)
    keys = list(keys)
    if registration is None or not keys:
        return {}
    return {str(obj.pk): obj for obj in registration.objects().filter(pk__in=keys)}


class Reader:
    """One user's read rights, asked lazily and remembered for the length of one search."""

    def __init__(self, user: _User | AnonymousUser | None) -> None:
        self.user = user if user is not None else AnonymousUser()
        # What an owned passage's ``owner`` column must hold for this user to read it.
        self.key = str(self.user.pk) if self.user.is_authenticated else None
        self._sources: dict[str, bool | None] = {}
        self._permissions: dict[str, bool] = {}

    def source_rule(self, source: str) -> bool | None:
        """``True``: the user may read every passage of ``source`` (as far as its owner and
        permission columns allow); ``False``: none; ``None``: it depends on the object (ask
        :meth:`object_allowed`)."""
        if source not in self._sources:
            self._sources[source] = self._source_rule(source)
        return self._sources[source]

    def _source_rule(self, source: str) -> bool | None:
        if not self.user.is_authenticated and not get_config().visitors["KNOWLEDGE"]:
            return False  # visitors who are not logged in read nothing unless the site says so
        if source == FILES:
            return True
        registration = registration_get(label=source)
        if registration is None:
            return False
        rule = registration.permission
        if rule is None:
            return True
        if isinstance(rule, str):
            return self.may(rule)
        return None

    def owner_required(self, source: str) -> bool:
        """Whether only an object's owner may read ``source``'s passages (its registration
        has an ``owner`` option)."""
        registration = registration_get(label=source)
        return registration is not None and registration.owner is not None

    def may(self, permission: str) -> bool:
        """Whether the user has ``permission`` ("" needs none)."""
        if not permission:
            return True
        if permission not in self._permissions:
            self._permissions[permission] = bool(self.user.has_perm(permission))
        return self._permissions[permission]

    def object_allowed(self, source: str, obj: Any) -> bool:
        """Whether the user may read ``obj`` (``None``: deleted, or outside the queryset),
        an object of ``source``, by the source's rule or its callable."""
        rule = self.source_rule(source)
        if rule is not None:
            return rule
        registration = registration_get(label=source)
        check = registration.permission if registration is not None else None
        return obj is not None and callable(check) and bool(check(self.user, obj))

    def document_allowed(self, source: str, key: str) -> bool:
        """Whether the user may read the document ``key`` of ``source`` by its source's rule
        (and callable: a deleted object, or one outside the registration's queryset, may be
        read by nobody). Owner and permission columns are the index's to apply."""
        rule = self.source_rule(source)
        if rule is not None:
            return rule
        return self.object_allowed(source, objects_of(source, [key]).get(key))
