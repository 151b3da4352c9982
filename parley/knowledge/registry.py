"""Models whose objects the assistant may answer from, registered by the host project.

```python
from parley import knowledge

knowledge.register(
    Article,
    fields=["title", "body"],
    title="title",
    url="get_absolute_url",
    permission="blog.view_article",
    queryset=Article.objects.filter(published=True),
)
```

A note only its author may read: ``knowledge.register(Note, fields=["body"], owner="author")``.

Call :func:`register` from an ``AppConfig.ready()``. Objects are indexed by
``manage.py parley_index`` and re-indexed when they are saved or deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models

# None: everyone who may chat; "app.codename": users with that model-level permission;
# a callable (user, obj) -> bool: decided object by object (at a cost; see docs/knowledge.md).
PermissionRule = str | Callable[[Any, Any], bool] | None
Getter = str | Callable[[Any], str] | None


@dataclass(frozen=True)
class Registration:
    """How one model's objects become knowledge: which fields make the text, the title and
    URL of each object, who may read it (``permission``, and ``owner``: the field naming the
    one user who may), and which objects are indexed at all."""

    model: type[models.Model]
    fields: tuple[str, ...]
    title: Getter = None
    url: Getter = None
    permission: PermissionRule = None
    queryset: models.QuerySet[Any] | None = None
    owner: str | None = None

    @property
    def label(self) -> str:
        """The source name of the model's passages, e.g. ``"blog.article"``."""
        return self.model._meta.label_lower

    def objects(self) -> models.QuerySet[Any]:
        """The objects to index (a fresh queryset each time)."""
        if self.queryset is not None:
            return self.queryset.all()
        return self.model._default_manager.all()

    def title_of(self, obj: Any) -> str:
        return _get(obj, self.title) if self.title else str(obj)

    def url_of(self, obj: Any) -> str:
        if self.url:
            return _get(obj, self.url)
        method = getattr(obj, "get_absolute_url", None)
        return str(method()) if callable(method) else ""

    def owner_of(self, obj: Any) -> str:
        """The primary key of the user who alone may read ``obj``, as text; "" without an
        ``owner`` option, or when the object has no owner (then nobody may read it)."""
        if not self.owner:
            return ""
        try:
            field = self.model._meta.get_field(self.owner)
        except FieldDoesNotExist:
            value = getattr(obj, self.owner)
        else:  # a foreign key's id, without fetching the user
            value = getattr(obj, getattr(field, "attname", self.owner))
        if isinstance(value, models.Model):
            value = value.pk
        return "" if value is None else str(value)

    def permission_of(self) -> str:
        """The model-level permission stored with the passages ("" if there is none)."""
        return self.permission if isinstance(self.permission, str) else ""

    def text_of(self, obj: Any) -> str:
        """The fields' values joined by blank lines (empty ones left out)."""
        values = (_get(obj, name) for name in self.fields)
        return "\n\n".join(value for value in values if value.strip())


def _get(obj: Any, getter: str | Callable[[Any], Any]) -> str:
    value = getter(obj) if callable(getter) else getattr(obj, getter)
    if callable(value):
        value = value()
    return "" if value is None else str(value)


_registry: dict[str, Registration] = {}


def register(
    model: type[models.Model],
    *,
    fields: Sequence[str],
    title: Getter = None,
    url: Getter = None,
    permission: PermissionRule = None,
    queryset: models.QuerySet[Any] | None = None,
    owner: str | None = None,
) -> Registration:
    """Make ``model``'s objects knowledge the assistant answers from; returns the registration.

    ``fields``: attribute names whose values make an object's text (Markdown is cut at its
    headings). ``title``, ``url``: an attribute name or a callable of the object (defaults:
    ``str(obj)`` and ``get_absolute_url()``). ``permission``: who may read an object's
    passages: ``None`` every user who may chat, ``"app.codename"`` users with that
    model-level permission (``user.has_perm``), or ``callable(user, obj) -> bool``.
    ``owner``: the name of the field (a foreign key to the user model) or attribute holding
    the one user who may read an object (on top of ``permission``).
    ``queryset``: only these objects are indexed (default: all).

    Registering a model again replaces its registration. Raises ``ImproperlyConfigured``
    for a field the model does not have or a malformed permission.
    """
    if isinstance(fields, str) or not fields:
        raise ImproperlyConfigured(f"register({model.__name__}): fields must be a list of names.")
    for name in fields:
        if not _has_attribute(model, name):
            raise ImproperlyConfigured(
                f"register({model.__name__}): {model.__name__} has no field {name!r}."
            )
    if isinstance(permission, str) and permission.count(".") != 1:
        raise ImproperlyConfigured(
            f"register({model.__name__}): permission {permission!r} is not 'app_label.codename'."
        )
    if owner is not None and not _has_attribute(model, owner):
        raise ImproperlyConfigured(
            f"register({model.__name__}): {model.__name__} has no field {owner!r} (owner)."
        )
    registration = Registration(
        model=model,
        fields=tuple(fields),
        title=title,
        url=url,
        permission=permission,
        queryset=queryset,
        owner=owner,
    )
    _registry[registration.label] = registration
    return registration


def _has_attribute(model: type[models.Model], name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return hasattr(model, name)
    return True


def unregister(model: type[models.Model]) -> None:
    """Forget ``model``: its passages are readable by nobody, and ``parley_index`` removes
    them. Unknown models are ignored."""
    _registry.pop(model._meta.label_lower, None)


def registration_get(*, label: str) -> Registration | None:
    """The registration of the model labelled ``label`` (``"blog.article"``), if any."""
    return _registry.get(label)


def registrations() -> list[Registration]:
    """Every registration, in the order they were made."""
    return list(_registry.values())
