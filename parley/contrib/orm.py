"""The INSERT of a posted message, built by hand: it leans on the ORM's private internals
(``Model._meta``, ``Model._state``) to do what ``save(force_insert=True)`` does, faster.
"""

from __future__ import annotations

import functools
from typing import cast

from django.db import connection, models
from django.db.models.signals import post_save, pre_save

from ..models import Message


def message_insert(message: Message) -> None:
    """Insert a new message as ``message.save(force_insert=True)`` does (the same row, the
    same ``pre_save`` and ``post_save`` signals), with a statement built once per database.

    Every posted message waits for this before its acknowledgement, and on SQLite the ORM's
    work to build and adapt an INSERT takes longer than the write itself (bench/README.md).
    Databases that cannot return the new id from an INSERT get ``save()``.
    """
    if not connection.features.can_return_columns_from_insert:
        message.save(force_insert=True)
        return
    using = connection.alias
    pre_save.send(sender=Message, instance=message, raw=False, using=using, update_fields=None)
    sql, attnames, datetimes = _message_insert_statement(connection.vendor)
    adapt = connection.ops.adapt_datetimefield_value
    params = [getattr(message, name) for name in attnames]
    for index in datetimes:
        params[index] = adapt(params[index])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        message.pk = cursor.fetchone()[0]
    message._state.adding = False
    message._state.db = using
    post_save.send(
        sender=Message, instance=message, created=True, update_fields=None, raw=False, using=using
    )


@functools.cache
def _message_insert_statement(vendor: str) -> tuple[str, list[str], list[int]]:
    """``(INSERT … RETURNING id, the attributes it takes in order, the positions of the
    datetimes among them)`` for the current connection's database (``vendor`` keys the
    cache)."""
    quote = connection.ops.quote_name
    fields = [field for field in Message._meta.concrete_fields if not field.primary_key]
    # A concrete field has a column (only the others have None).
    sql = "INSERT INTO {} ({}) VALUES ({}) RETURNING {}".format(
        quote(Message._meta.db_table),
        ", ".join(quote(cast(str, field.column)) for field in fields),
        ", ".join(["%s"] * len(fields)),
        quote(cast(str, Message._meta.pk.column)),
    )
    datetimes = [i for i, field in enumerate(fields) if isinstance(field, models.DateTimeField)]
    return sql, [field.attname for field in fields], datetimes
