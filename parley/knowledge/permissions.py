"""Who may read which passages, decided at query time from each passage's source.

Files of ``KNOWLEDGE["FOLDERS"]`` may be read by every user who may chat. A registered
model's passages follow its registration's ``permission``; those of a model that is no
longer registered may be read by nobody.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser

from .registry import registration_get
from .sources import FILES


class Reader:
    """One user's read rights, asked lazily and remembered for the length of one search."""

    def __init__(self, user: Any) -> None:
        self.user = user if user is not None else AnonymousUser()
        self._sources: dict[str, bool | None] = {}
        self._objects: dict[tuple[str, str], bool] = {}

    def source_rule(self, source: str) -> bool | None:
        """``True``: the user may read every passage of ``source``; ``False``: none;
        ``None``: it depends on the object (ask :meth:`document_allowed`)."""
        if source not in self._sources:
            self._sources[source] = self._source_rule(source)
        return self._sources[source]

    def _source_rule(self, source: str) -> bool | None:
        if source == FILES:
            return True
        registration = registration_get(label=source)
        if registration is None:
            return False
        rule = registration.permission
        if rule is None:
            return True
        if isinstance(rule, str):
            return bool(self.user.has_perm(rule))
        return None

    def document_allowed(self, source: str, key: str) -> bool:
        """Whether the user may read the document ``key`` of ``source``. A deleted object,
        or one outside the registration's queryset, may be read by nobody."""
        rule = self.source_rule(source)
        if rule is not None:
            return rule
        if (source, key) not in self._objects:
            registration = registration_get(label=source)
            obj = registration.objects().filter(pk=key).first() if registration else None
            allowed = False
            if obj is not None and registration is not None:
                check = registration.permission
                allowed = bool(callable(check) and check(self.user, obj))
            self._objects[(source, key)] = allowed
        return self._objects[(source, key)]
