"""Where Parley leans on the ORM's internals: statements built by hand for what every
message, answer and socket writes and reads (from ``Model._meta``, setting ``Model._state``:
what the ORM does, without its compiling of each query), and the serving threads'
connections kept out of DEBUG's query log.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar, cast

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import post_save, pre_save

from ..models import Membership, Message, Room, Ticket

T = TypeVar("T")


def _per_database(build: Callable[[], T]) -> Callable[[], T]:
    """``build()`` once per database vendor (quoting differs), its statement kept: the
    statements here serve hot paths, where building one again cost a few percent."""
    built: dict[str, T] = {}

    def statement() -> T:
        vendor = connection.vendor
        if vendor not in built:
            built[vendor] = build()
        return built[vendor]

    return functools.update_wrapper(statement, build)


def _column(model: type[models.Model], name: str | None = None) -> str:
    """The quoted column of ``model``'s field ``name`` (its primary key by default)."""
    field = model._meta.pk if name is None else model._meta.get_field(name)
    assert isinstance(field, models.Field)  # a concrete field, with a column
    return connection.ops.quote_name(cast(str, field.column))


def message_insert(message: Message) -> bool:
    """Insert a new message as ``message.save(force_insert=True)`` does (the same row, the
    same ``pre_save`` and ``post_save`` signals), with a statement built once per database;
    ``False``, and no row, where a unique constraint already holds its like (a client id
    used before), without failing the transaction around it.

    Every posted message waits for this before its acknowledgement, and on SQLite the ORM's
    work to build and adapt an INSERT takes longer than the write itself (bench/README.md).
    Databases other than SQLite and PostgreSQL (whose ``ON CONFLICT`` clause it uses), and
    SQLite before 3.35 (no ``RETURNING``), get ``save()`` in a savepoint.
    """
    fast = connection.vendor in ("sqlite", "postgresql")
    if not (fast and connection.features.can_return_columns_from_insert):
        try:
            with transaction.atomic():
                message.save(force_insert=True)
        except IntegrityError:
            return False
        return True
    _pre_save(message)
    sql, attnames, datetimes = _message_insert_statement()
    with connection.cursor() as cursor:
        cursor.execute(sql, _values(message, attnames, datetimes))
        row = cursor.fetchone()
    if row is None:  # ON CONFLICT DO NOTHING: nothing inserted
        return False
    _saved(message, row[0])
    return True


def _pre_save(message: Message) -> None:
    pre_save.send(
        sender=Message, instance=message, raw=False, using=connection.alias, update_fields=None
    )


def _values(message: Message, attnames: list[str], datetimes: list[int]) -> list[Any]:
    """The values of ``attnames`` for a statement, datetimes adapted as the ORM would."""
    values = [getattr(message, name) for name in attnames]
    for index in datetimes:
        values[index] = connection.ops.adapt_datetimefield_value(values[index])
    return values


def _saved(message: Message, pk: Any) -> None:
    """What ``save()`` does once the row is in: the instance knows it, ``post_save`` goes out."""
    message.pk = pk
    message._state.adding = False
    message._state.db = connection.alias
    post_save.send(
        sender=Message, instance=message, created=True, update_fields=None, raw=False,
        using=connection.alias,
    )  # fmt: skip


class MessageConflict(Exception):
    """:func:`messages_insert_many` stored not every row: the transaction must roll back."""


def messages_insert_many(messages: list[Message]) -> bool:
    """Insert new user messages, each taking its room's next number, with one statement
    each sent together (psycopg's pipeline: one round trip for all, where one after another
    each message cost two); ``False``, doing nothing, on databases other than PostgreSQL.
    Raises :class:`MessageConflict` if a row was not stored (a client id used before): its
    number is taken all the same, so the caller rolls the transaction back and stores them
    one by one. ``pre_save`` and ``post_save`` go out as for ``save()``."""
    if connection.vendor != "postgresql":
        return False
    for message in messages:
        _pre_save(message)
    sql, attnames, datetimes = _messages_insert_many_statement()
    params = [[message.room_id, *_values(message, attnames, datetimes)] for message in messages]
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own: Django's wrapper has no `returning`
        raw.executemany(sql, params, returning=True)
        stored = []
        while True:
            stored.append(raw.fetchone())
            if not raw.nextset():
                break
    if len(stored) != len(messages) or None in stored:
        raise MessageConflict
    for message, (pk, seq) in zip(messages, stored, strict=True):
        message.seq = seq
        _saved(message, pk)
    return True


@_per_database
def _messages_insert_many_statement() -> tuple[str, list[str], list[int]]:
    """PostgreSQL's ``WITH n AS (UPDATE room … RETURNING last_seq) INSERT … SELECT …, n.last_seq
    FROM n ON CONFLICT DO NOTHING RETURNING id, seq``, the attributes its values take (all
    but ``seq``), and the positions of the datetimes among them."""
    quote = connection.ops.quote_name
    fields = [field for field in Message._meta.concrete_fields if not field.primary_key]
    values = [field for field in fields if field.name != "seq"]
    last_seq = _column(Room, "last_seq")
    selected = ", ".join("n.seq" if field.name == "seq" else "%s" for field in fields)
    sql = (
        f"WITH n AS (UPDATE {quote(Room._meta.db_table)} SET {last_seq} = {last_seq} + 1"
        f" WHERE {_column(Room)} = %s RETURNING {last_seq} AS seq)"
        f" INSERT INTO {quote(Message._meta.db_table)}"
        f" ({', '.join(quote(cast(str, field.column)) for field in fields)})"
        f" SELECT {selected} FROM n ON CONFLICT DO NOTHING"
        f" RETURNING {_column(Message)}, {_column(Message, 'seq')}"
    )
    datetimes = [i for i, field in enumerate(values) if isinstance(field, models.DateTimeField)]
    return sql, [field.attname for field in values], datetimes


@_per_database
def _message_insert_statement() -> tuple[str, list[str], list[int]]:
    """``(INSERT … ON CONFLICT DO NOTHING RETURNING id, the attributes it takes in order,
    the positions of the datetimes among them)`` for the current connection's database."""
    quote = connection.ops.quote_name
    fields = [field for field in Message._meta.concrete_fields if not field.primary_key]
    # A concrete field has a column (only the others have None).
    sql = "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING RETURNING {}".format(
        quote(Message._meta.db_table),
        ", ".join(quote(cast(str, field.column)) for field in fields),
        ", ".join(["%s"] * len(fields)),
        _column(Message),
    )
    datetimes = [i for i, field in enumerate(fields) if isinstance(field, models.DateTimeField)]
    return sql, [field.attname for field in fields], datetimes


def message_progress_update(texts: Mapping[int, str], *, now: datetime) -> None:
    """``UPDATE`` the text of each streaming answer in ``texts`` (``{id: text}``) and stamp
    it ``now``, as ``Message.objects.filter(pk=id, status="streaming").update(...)`` would
    for each, in one ``executemany``: a process streaming hundreds of answers saves them all
    every second, and the ORM's compiling of each UPDATE would cost more than the writes."""
    stamp = connection.ops.adapt_datetimefield_value(now)
    rows = [(text, stamp, pk, Message.Status.STREAMING.value) for pk, text in texts.items()]
    with connection.cursor() as cursor:
        cursor.executemany(_message_progress_sql(), rows)


@_per_database
def _message_progress_sql() -> str:
    return "UPDATE {} SET {} = %s, {} = %s WHERE {} = %s AND {} = %s".format(
        connection.ops.quote_name(Message._meta.db_table),
        *(_column(Message, name) for name in ("text", "updated_at", "id", "status")),
    )


_unlogged = threading.local()


def queries_unlogged() -> None:
    """Keep this thread's database connections out of DEBUG's query log: for the threads
    that serve sockets (:mod:`parley.realtime.db`), called before each of their calls.

    With ``DEBUG`` on (as ``make run`` serves), Django wraps every cursor to time and format
    each query into a log of 9,000 per connection that a server's threads never read: a
    tenth of the database thread's time at a few hundred answers (bench/README.md). A
    connection that is asked to log (``force_debug_cursor``, as ``CaptureQueriesContext``
    does) still logs."""
    if getattr(_unlogged, "done", False):
        return
    for conn in connections.all():
        conn.make_debug_cursor = functools.partial(_cursor, conn, conn.make_debug_cursor)  # type: ignore[method-assign]
    _unlogged.done = True


def _cursor(conn: BaseDatabaseWrapper, debug: Any, cursor: Any) -> Any:
    return debug(cursor) if conn.force_debug_cursor else conn.make_cursor(cursor)


def messages_context(*, room_id: int, before: int, limit: int) -> list[tuple[str, str, str]]:
    """``(role, text, author's username or "")`` of the room's last ``limit`` messages
    numbered below ``before``, oldest first, leaving out streaming answers and empty texts:
    the conversation that :func:`parley.answers.records.answer_request` sends a model, as it
    stood when message ``before`` was posted.

    Of a message with several versions (an answer regenerated, a question edited), only the
    newest below ``before`` counts, in its first version's place, and an answer only if its
    question is that newest version: the path that leads to ``before``, not every version
    (however many there are, ``limit`` counts messages on that path). An answer takes its
    question's place, so an answer that ended after a question that waited for it comes
    before that question. One statement built by hand: every answer waits for this read
    before its first token, and the ORM's compiling of it cost more than the read."""
    streaming = (Message.Role.ASSISTANT.value, Message.Status.STREAMING.value)
    with connection.cursor() as cursor:
        cursor.execute(
            _messages_context_sql(), (before, before, room_id, before, *streaming, limit)
        )
        rows = cursor.fetchall()
    # Read newest first along the (room, seq) index; a version then goes to its first's place.
    rows.sort(key=lambda row: (row[0], row[1]))
    return [(role, text, author or "") for _, _, role, text, author in rows]


@_per_database
def _messages_context_sql() -> str:
    users = get_user_model()
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)

    def column(alias: str, name: str) -> str:
        return f"{alias}.{_column(Message, name)}"

    def superseded(alias: str) -> str:
        """Whether a later version of message ``alias`` exists below ``before``."""
        return (
            f"EXISTS (SELECT 1 FROM {table} v WHERE {column('v', 'version_of')} = "
            f"COALESCE({column(alias, 'version_of')}, {column(alias, 'id')})"
            f" AND {column('v', 'seq')} > {column(alias, 'seq')} AND {column('v', 'seq')} < %s"
            f" AND {column('v', 'room')} = {column(alias, 'room')})"
        )

    m = {name: column("m", name) for name in ("id", "role", "text", "author", "room", "seq")}
    username = f"u.{_column(users, users.USERNAME_FIELD)}"
    # ``place``: the seq of the first version of the message, or for an answer of its
    # question's first version. The sort on it is done in Python: an ORDER BY on it would
    # sort every message of the room instead of reading the last ones along the index.
    place = (
        f"COALESCE({column('qf', 'seq')}, {column('q', 'seq')}, {column('f', 'seq')}, {m['seq']})"
    )
    return (
        f"SELECT {place}, {m['seq']}, {m['role']}, {m['text']}, {username} FROM {table} m"
        f" LEFT JOIN {quote(users._meta.db_table)} u ON u.{_column(users)} = {m['author']}"
        f" LEFT JOIN {table} f ON {column('f', 'id')} = {column('m', 'version_of')}"
        f" LEFT JOIN {table} q ON {column('q', 'id')} = {column('m', 'reply_to')}"
        f" LEFT JOIN {table} qf ON {column('qf', 'id')} = {column('q', 'version_of')}"
        f" WHERE NOT {superseded('m')} AND NOT ({column('q', 'id')} IS NOT NULL AND"
        f" {superseded('q')}) AND {m['room']} = %s AND {m['seq']} < %s AND {m['text']} <> ''"
        f" AND NOT ({m['role']} = %s AND {column('m', 'status')} = %s)"
        f" ORDER BY {m['seq']} DESC LIMIT %s"
    )


def room_member_users(*, room_id: int) -> list[Any]:
    """The users who are members of the room, in the order they joined, as
    :func:`parley.rooms.selectors.room_members` gives them: one statement built by hand
    (``raw()``), since every answer in a shared room reads them before its first token."""
    return list(get_user_model()._default_manager.raw(_room_member_users_sql(), [room_id]))


@_per_database
def _room_member_users_sql() -> str:
    users = get_user_model()
    quote = connection.ops.quote_name
    return (
        f"SELECT u.* FROM {quote(users._meta.db_table)} u"
        f" JOIN {quote(Membership._meta.db_table)} p"
        f" ON p.{_column(Membership, 'user')} = u.{_column(users)}"
        f" WHERE p.{_column(Membership, 'room')} = %s"
        f" ORDER BY p.{_column(Membership, 'joined_at')}, p.{_column(Membership)}"
    )


def ticket_spend(*, nonce: str, now: datetime) -> tuple[str, str] | None:
    """Spend one use of the unexpired ticket ``nonce``: its ``(session_key, auth_hash)``, or
    ``None`` if it is unknown, expired or spent. One ``UPDATE … RETURNING`` that only one
    server process can win (as ``filter(...).update(uses_left=F(...) - 1)`` after a read
    would be): every socket opened with a ticket makes it before it joins."""
    with connection.cursor() as cursor:
        cursor.execute(_ticket_spend_sql(), (nonce, connection.ops.adapt_datetimefield_value(now)))
        row = cursor.fetchone()
    return (row[0], row[1]) if row is not None else None


@_per_database
def _ticket_spend_sql() -> str:
    uses = _column(Ticket, "uses_left")
    return (
        f"UPDATE {connection.ops.quote_name(Ticket._meta.db_table)} SET {uses} = {uses} - 1"
        f" WHERE {_column(Ticket, 'nonce')} = %s"
        f" AND {_column(Ticket, 'expires_at')} > %s AND {uses} > 0"
        f" RETURNING {_column(Ticket, 'session_key')}, {_column(Ticket, 'auth_hash')}"
    )


def user_get(*, pk: Any) -> Any:
    """The user with primary key ``pk``, or ``None``: ``raw()``, without the ORM's compiling,
    for the socket that joins with a ticket."""
    found = list(get_user_model()._default_manager.raw(_user_get_sql(), [pk]))
    return found[0] if found else None


@_per_database
def _user_get_sql() -> str:
    users = get_user_model()
    return (
        f"SELECT * FROM {connection.ops.quote_name(users._meta.db_table)}"
        f" WHERE {_column(users)} = %s"
    )


def room_get_joined(*, public_id: str, user_pk: Any) -> Room | None:
    """The room with ``public_id`` if the user with ``user_pk`` is a member, else ``None``:
    ``raw()`` for :func:`parley.rooms.selectors.room_get_for_member`, which every socket
    calls before it joins."""
    found = list(Room.objects.raw(_room_get_joined_sql(), [public_id, user_pk]))
    return found[0] if found else None


@_per_database
def _room_get_joined_sql() -> str:
    quote = connection.ops.quote_name
    return (
        f"SELECT r.* FROM {quote(Room._meta.db_table)} r"
        f" JOIN {quote(Membership._meta.db_table)} p"
        f" ON p.{_column(Membership, 'room')} = r.{_column(Room)}"
        f" WHERE r.{_column(Room, 'public_id')} = %s"
        f" AND p.{_column(Membership, 'user')} = %s"
    )


def question_waiting_first(*, room_id: int, before: int | None = None) -> int | None:
    """The id of the room's oldest waiting question (numbered below ``before``, if given), or
    ``None``: a plain statement on the partial index of waiting questions, since every answer
    asks before it opens and when it ends (the ORM's ``exists()`` more than doubled the cost
    of opening one, bench/README.md)."""
    with connection.cursor() as cursor:
        cursor.execute(_question_waiting_sql(), [room_id, before or 2**63 - 1])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


@_per_database
def _question_waiting_sql() -> str:
    # The condition spelt as the index's (Q(waiting=True)), so that SQLite uses that index.
    seq = _column(Message, "seq")
    return (
        f"SELECT {_column(Message)} FROM {connection.ops.quote_name(Message._meta.db_table)}"
        f" WHERE {_column(Message, 'room')} = %s AND {seq} < %s AND {_column(Message, 'waiting')}"
        f" ORDER BY {seq} LIMIT 1"
    )
