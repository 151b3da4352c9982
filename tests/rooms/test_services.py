from __future__ import annotations

import inspect
import threading
from datetime import timedelta

import django.core.exceptions
import pytest
from django.db import close_old_connections, connection
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from parley import exceptions
from parley.answers import records
from parley.backends.base import SearchContext
from parley.exceptions import AssistantBusy, RoomPermissionDenied
from parley.models import Membership, Message, Room
from parley.rooms import payloads, selectors, services

pytestmark = pytest.mark.django_db


def test_room_create_makes_owner_a_member(alice):
    room = services.room_create(owner=alice, title="  Ideas ", kind=Room.Kind.SHARED)
    assert room.title == "Ideas"
    assert list(room.members.all()) == [alice]
    assert len(room.public_id) >= 16


def test_invite_only_into_shared_rooms_and_only_by_members(
    alice, bob, make_user, private_room, shared_room
):
    carol = make_user("carol")
    with pytest.raises(RoomPermissionDenied):
        services.invitation_create(room=private_room, by=alice, username="bob")
    with pytest.raises(RoomPermissionDenied):
        services.invitation_create(room=shared_room, by=carol, username="carol")
    first = services.invitation_create(room=shared_room, by=bob, username="carol")
    assert first is not None and first.invited_by == bob
    # Invited already and not answered: nothing new.
    assert services.invitation_create(room=shared_room, by=alice, username="carol") is None
    assert not selectors.room_is_member(room=shared_room, user=carol)
    services.invitation_answer(invitation_id=first.pk, user=carol, accept=True)
    assert Membership.objects.get(room=shared_room, user=carol).invited_by == bob


def test_room_member_add_adds_at_once_and_only_to_shared_rooms(alice, bob, private_room):
    with pytest.raises(RoomPermissionDenied):
        services.room_member_add(room=private_room, user=bob, by=alice)
    shared = services.room_create(owner=alice, title="Team", kind=Room.Kind.SHARED)
    services.room_member_add(room=shared, user=bob, by=alice)
    services.room_member_add(room=shared, user=bob, by=alice)  # twice is harmless
    assert Membership.objects.filter(room=shared, user=bob).count() == 1


def test_room_get_for_member_hides_foreign_and_unknown_rooms(alice, bob, private_room):
    assert (
        selectors.room_get_for_member(public_id=private_room.public_id, user=alice) == private_room
    )
    with pytest.raises(RoomPermissionDenied) as foreign:
        selectors.room_get_for_member(public_id=private_room.public_id, user=bob)
    with pytest.raises(RoomPermissionDenied) as unknown:
        selectors.room_get_for_member(public_id="no-such-room", user=bob)
    assert str(foreign.value) == str(unknown.value)


def test_sequence_numbers_increase_without_gaps(alice, private_room):
    for n in range(5):
        services.message_post(room=private_room, author=alice, text=f"m{n}")
    assert list(private_room.messages.values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    private_room.refresh_from_db()
    assert private_room.last_seq == 5


@pytest.fixture(
    # The save() path is for databases whose INSERT cannot return ids (MySQL): tried on
    # SQLite, which can stand in for one (its cursors have lastrowid); psycopg's cannot.
    params=["insert statement"] + (["save()"] if connection.vendor == "sqlite" else [])
)
def insert_path(request, monkeypatch):
    """``message_post`` with its own INSERT statement, and with the ``save()`` used on
    databases that cannot return ids from an INSERT."""
    if request.param == "save()":
        monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    return request.param


def test_posted_message_is_stored_as_the_orm_stores_it(alice, private_room, insert_path):
    """The row ``message_post`` writes reads back exactly as the returned message, and as a
    message saved by the ORM reads back (datetimes included)."""
    posted, created = services.message_post(
        room=private_room, author=alice, text="hé <b>", client_id="c-9"
    )
    assert created and posted.pk is not None and not posted._state.adding
    saved = Message.objects.create(
        room=private_room, seq=99, role="user", author=alice, text="hé <b>", client_id="c-8"
    )
    columns = [f.attname for f in Message._meta.concrete_fields if f.attname not in ("id",)]
    stored = Message.objects.filter(pk=posted.pk).values(*columns).get()
    assert stored == {name: getattr(posted, name) for name in columns}
    reference = Message.objects.filter(pk=saved.pk).values(*columns).get()
    different = {"seq", "client_id", "created_at", "updated_at"}
    assert {k: v for k, v in stored.items() if k not in different} == {
        k: v for k, v in reference.items() if k not in different
    }
    assert abs(stored["created_at"] - reference["created_at"]) < timedelta(seconds=5)
    assert Message.objects.filter(created_at__gte=stored["created_at"]).count() == 2


def test_posting_sends_the_model_signals(alice, private_room, insert_path):
    seen: list[tuple[str, int | None, bool | None]] = []

    def on_pre_save(sender, instance, **kwargs):
        seen.append(("pre_save", instance.pk, kwargs.get("created")))

    def on_post_save(sender, instance, created, **kwargs):
        seen.append(("post_save", instance.pk, created))

    pre_save.connect(on_pre_save, sender=Message)
    post_save.connect(on_post_save, sender=Message)
    try:
        message, _ = services.message_post(room=private_room, author=alice, text="hello")
    finally:
        pre_save.disconnect(on_pre_save, sender=Message)
        post_save.disconnect(on_post_save, sender=Message)
    assert seen == [("pre_save", None, None), ("post_save", message.pk, True)]


def test_resend_with_same_client_id_is_stored_once(alice, bob, shared_room):
    first, created = services.message_post(
        room=shared_room, author=alice, text="hi", client_id="c1"
    )
    again, created_again = services.message_post(
        room=shared_room, author=alice, text="hi", client_id="c1"
    )
    assert created and not created_again
    assert again.pk == first.pk
    _, bob_created = services.message_post(room=shared_room, author=bob, text="hi", client_id="c1")
    assert bob_created  # client ids are per author
    assert shared_room.messages.count() == 2


def test_posts_stored_together_each_get_their_own_result(alice, bob, shared_room, private_room):
    services.message_post(room=shared_room, author=alice, text="first", client_id="c1")
    results = services.messages_post(
        posts=[
            services.Post(shared_room, bob, "from bob", "b1"),
            services.Post(shared_room, alice, "a resend", "c1"),  # alice used c1 already
            services.Post(private_room, alice, "elsewhere", "c1"),  # another room: new
            services.Post(shared_room, alice, "after it", "c2"),
        ]
    )
    assert [(m.text, created) for m, created in results] == [
        ("from bob", True), ("first", False), ("elsewhere", True), ("after it", True),
    ]  # fmt: skip
    # The resend gave its number back: the room's numbers have no gap.
    assert list(shared_room.messages.order_by("seq").values_list("seq", "text")) == [
        (1, "first"), (2, "from bob"), (3, "after it"),
    ]  # fmt: skip
    assert results[0][0].pk and results[0][0].seq == 2


def test_posts_stored_together_take_their_rooms_numbers_in_order(
    alice, bob, shared_room, private_room
):
    saved = []

    def note(sender, instance, created, **kwargs):
        saved.append((instance.pk, created))

    post_save.connect(note, sender=Message)
    try:
        results = services.messages_post(
            posts=[
                services.Post(shared_room, alice, "a1", "x1"),
                services.Post(private_room, alice, "p1", "x1"),
                services.Post(shared_room, bob, "a2", "x1"),
                services.Post(shared_room, alice, "a3", "x2"),
            ]
        )
    finally:
        post_save.disconnect(note, sender=Message)
    assert [(m.text, m.seq, created) for m, created in results] == [
        ("a1", 1, True), ("p1", 1, True), ("a2", 2, True), ("a3", 3, True),
    ]  # fmt: skip
    stored = Message.objects.in_bulk([m.pk for m, _ in results])
    assert [(stored[m.pk].text, stored[m.pk].seq) for m, _ in results] == [
        ("a1", 1), ("p1", 1), ("a2", 2), ("a3", 3),
    ]  # fmt: skip
    assert saved == [(m.pk, True) for m, _ in results]  # as save() would signal
    shared_room.refresh_from_db()
    assert shared_room.last_seq == 3


def test_a_post_that_fails_alone_costs_the_others_nothing(alice, bob, shared_room, private_room):
    gone = services.room_create(owner=alice, title="Gone")
    post = services.Post(gone, alice, "too late")
    Room.objects.filter(pk=gone.pk).delete()
    results = services.messages_post(
        posts=[
            services.Post(shared_room, bob, "one"),
            post,
            services.Post(private_room, alice, "two"),
        ]
    )
    assert isinstance(results[1], Room.DoesNotExist)
    assert [results[0][0].text, results[2][0].text] == ["one", "two"]
    assert shared_room.messages.get().text == "one" and private_room.messages.get().text == "two"


def test_one_streaming_answer_per_room(alice, private_room):
    question, _ = services.message_post(room=private_room, author=alice, text="q")
    answer, interrupted = records.answer_open(room=private_room, reply_to=question, worker="w")
    assert answer.status == Message.Status.STREAMING and interrupted == []
    with pytest.raises(AssistantBusy):
        records.answer_open(room=private_room, reply_to=question, worker="w")
    records.answer_finish(answer=answer, text="done", status=Message.Status.COMPLETE)
    nxt, _ = services.message_post(room=private_room, author=alice, text="q2")
    assert records.answer_open(room=private_room, reply_to=nxt, worker="w")[0].seq == 4
    # The refused attempt took no sequence number.
    assert list(private_room.messages.values_list("seq", flat=True)) == [1, 2, 3, 4]


def test_answer_finish_rejects_non_terminal_status(alice, private_room):
    question, _ = services.message_post(room=private_room, author=alice, text="q")
    answer, _ = records.answer_open(room=private_room, reply_to=question, worker="w")
    with pytest.raises(ValueError):
        records.answer_finish(answer=answer, text="", status=Message.Status.STREAMING)


def test_progress_is_saved_only_while_streaming(alice, private_room):
    question, _ = services.message_post(room=private_room, author=alice, text="q")
    answer, _ = records.answer_open(room=private_room, reply_to=question, worker="w")
    records.answers_save_progress(texts={answer.pk: "part"})
    assert Message.objects.get(pk=answer.pk).text == "part"
    records.answer_finish(answer=answer, text="final", status=Message.Status.CANCELLED)
    records.answers_save_progress(texts={answer.pk: "late"}, alive=[answer.pk])
    finished = Message.objects.get(pk=answer.pk)
    assert (finished.text, finished.status) == ("final", Message.Status.CANCELLED)


def test_one_heartbeat_saves_the_texts_that_grew_and_stamps_the_others(
    alice, private_room, shared_room
):
    old = timezone.now() - timedelta(minutes=5)
    opened = []
    for room in (private_room, shared_room):
        question, _ = services.message_post(room=room, author=alice, text="q")
        answer, _ = records.answer_open(room=room, reply_to=question, worker="w")
        Message.objects.filter(pk=answer.pk).update(text="so far", updated_at=old)
        opened.append(answer)
    grew, same = opened
    records.answers_save_progress(texts={grew.pk: "so far, and more"}, alive=[same.pk])
    grew.refresh_from_db()
    same.refresh_from_db()
    assert grew.text == "so far, and more" and same.text == "so far"
    assert grew.updated_at > old and same.updated_at > old
    assert records.answers_mark_stale() == []  # both are alive


def test_answer_request_has_recent_history_with_authors(alice, bob, shared_room, settings):
    settings.PARLEY = {**settings.PARLEY, "CONTEXT_MESSAGES": 3}
    services.message_post(room=shared_room, author=alice, text="old")
    services.message_post(room=shared_room, author=bob, text="hello")
    q1, _ = services.message_post(room=shared_room, author=alice, text="first?")
    a1, _ = records.answer_open(room=shared_room, reply_to=q1, worker="w")
    records.answer_finish(answer=a1, text="first!", status=Message.Status.COMPLETE)
    q2, _ = services.message_post(room=shared_room, author=bob, text="second?")
    a2, _ = records.answer_open(room=shared_room, reply_to=q2, worker="w")
    request = records.answer_request(answer=a2)
    assert [(t.role, t.content, t.author) for t in request.turns] == [
        ("user", "first?", "alice"),
        ("assistant", "first!", ""),
        ("user", "second?", "bob"),
    ]
    assert request.question == "second?"
    assert request.user == "bob"
    assert request.room == "Team"


def test_answer_request_answers_its_question_not_a_message_posted_after_it(alice, bob, shared_room):
    """Bob posts while Alice's question waits for its answer to be opened: the answer is to
    Alice's question, searched with its text, and Bob's message is not in its context."""
    from parley.knowledge.chunking import Section
    from parley.knowledge.sources import Document
    from parley.knowledge.store import document_store

    for key, title, text in (
        ("kb/travel.md", "Travel", "The ferry leaves at nine."),
        ("kb/coffee.md", "Coffee", "Descale the coffee machine monthly."),
    ):
        section = Section(title=title, anchor="", text=text)
        document_store(
            document=Document(source="files", key=key, title=title, url="", sections=[section])
        )
    question, _ = services.message_post(room=shared_room, author=alice, text="When is the ferry?")
    services.message_post(room=shared_room, author=bob, text="How do I descale the coffee machine?")
    answer, _ = records.answer_open(room=shared_room, reply_to=question, worker="w")
    request = records.answer_request(answer=answer)
    assert request.question == "When is the ferry?"
    assert [(t.author, t.content) for t in request.turns] == [("alice", "When is the ferry?")]
    assert [p.title for p in request.passages] == ["Travel"]
    assert request.user == "alice"


def test_answer_request_carries_the_passages_for_the_question(alice, bob, shared_room):
    from parley.knowledge.chunking import Section
    from parley.knowledge.sources import Document
    from parley.knowledge.store import document_store

    section = Section(title="Travel › Ferry", anchor="ferry", text="The ferry leaves at nine.")
    document_store(
        document=Document(
            source="files", key="kb/travel.md", title="Travel", url="/kb/travel", sections=[section]
        )
    )
    question, _ = services.message_post(room=shared_room, author=bob, text="When is the ferry?")
    answer, _ = records.answer_open(room=shared_room, reply_to=question, worker="w")
    request = records.answer_request(answer=answer)
    assert [(p.title, p.url, p.text) for p in request.passages] == [
        ("Travel › Ferry", "/kb/travel#ferry", "The ferry leaves at nine.")
    ]


def test_answer_request_searches_as_the_asker_and_survives_a_broken_index(
    alice, bob, shared_room, monkeypatch, caplog
):
    from parley.knowledge import index

    asked = []

    def search(**kwargs):
        asked.append(kwargs)
        return index.Retrieval(passages=[])

    monkeypatch.setattr(records, "knowledge_search", search)
    question, _ = services.message_post(room=shared_room, author=bob, text="When is the ferry?")
    answer, _ = records.answer_open(room=shared_room, reply_to=question, worker="w")
    records.answer_request(answer=answer)
    # In a shared room, every member's rights count (see tests/knowledge/test_access.py).
    assert asked == [
        {
            "query": "When is the ferry?",
            "context": SearchContext(),  # nothing asked before
            "user": bob,
            "audience": [alice, bob],
        }
    ]

    def broken(**kwargs):
        raise RuntimeError("index exploded")

    monkeypatch.setattr(records, "knowledge_search", broken)
    assert records.answer_request(answer=answer).passages == ()
    assert "knowledge search failed" in caplog.text


def test_messages_after_pages(alice, private_room):
    for n in range(5):
        services.message_post(room=private_room, author=alice, text=f"m{n}")
    page, more = selectors.messages_after(room=private_room, after=1, limit=2)
    assert [m.seq for m in page] == [2, 3] and more
    page, more = selectors.messages_after(room=private_room, after=3, limit=2)
    assert [m.seq for m in page] == [4, 5] and not more


def test_assistant_payload_is_sanitised_html_and_user_payload_is_text(alice, private_room):
    question, _ = services.message_post(room=private_room, author=alice, text="<b>hi</b>")
    answer, _ = records.answer_open(room=private_room, reply_to=question, worker="w")
    assert "html" not in payloads.message_payload(answer)  # not while streaming
    final = records.answer_finish(
        answer=answer,
        text="**bold** <script>alert(1)</script> [x](javascript:alert(1)) ![i](https://evil.example/x.png)",
        status=Message.Status.COMPLETE,
    )
    html = payloads.message_payload(final)["html"]
    assert "<strong>bold</strong>" in html
    assert "&lt;script&gt;" in html and "<script" not in html
    assert 'href="javascript' not in html and "<img" not in html
    user_payload = payloads.message_payload(question)
    assert "html" not in user_payload and user_payload["text"] == "<b>hi</b>"
    assert user_payload["author"] == {"id": alice.pk, "name": "alice"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_get_distinct_gapless_numbers(alice, private_room):
    errors: list[BaseException] = []

    def post(worker: int) -> None:
        try:
            for n in range(10):
                services.message_post(room=private_room, author=alice, text=f"{worker}-{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=post, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(private_room.messages.values_list("seq", flat=True)) == list(range(1, 41))


def test_only_answers_without_heartbeat_are_interrupted(alice, private_room, shared_room, settings):
    settings.PARLEY = {**settings.PARLEY, "ANSWER_STALE_AFTER": 60}
    q1, _ = services.message_post(room=private_room, author=alice, text="q")
    stale, _ = records.answer_open(room=private_room, reply_to=q1, worker="dead")
    q2, _ = services.message_post(room=shared_room, author=alice, text="q")
    alive, _ = records.answer_open(room=shared_room, reply_to=q2, worker="alive")
    Message.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    records.answers_save_progress(texts={alive.pk: "still going"})
    assert [m.pk for m in records.answers_mark_stale()] == [stale.pk]
    stale.refresh_from_db()
    alive.refresh_from_db()
    assert stale.status == "interrupted" and stale.error
    assert alive.status == "streaming"
    # The room takes a new answer again.
    assert records.answer_open(room=private_room, reply_to=q1, worker="w")[0].status == "streaming"


def test_opening_an_answer_closes_the_one_a_dead_process_left(alice, private_room, settings):
    settings.PARLEY = {**settings.PARLEY, "ANSWER_STALE_AFTER": 60}
    q1, _ = services.message_post(room=private_room, author=alice, text="q")
    dead, _ = records.answer_open(room=private_room, reply_to=q1, worker="dead")
    q2, _ = services.message_post(room=private_room, author=alice, text="q2")
    with pytest.raises(AssistantBusy):  # alive yet: the room is busy
        records.answer_open(room=private_room, reply_to=q2, worker="w")
    Message.objects.filter(pk=dead.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    answer, interrupted = records.answer_open(room=private_room, reply_to=q2, worker="w")
    assert [m.pk for m in interrupted] == [dead.pk] and interrupted[0].status == "interrupted"
    assert answer.status == "streaming"
    # Sequence numbers have no gap: the refused attempt gave its number back.
    assert list(private_room.messages.values_list("seq", flat=True)) == [1, 2, 3, 4]


def test_messages_after_pages_by_bytes_too_and_a_page_holds_at_least_one(alice, private_room):
    for n in range(5):
        services.message_post(room=private_room, author=alice, text=f"{n}" + "é" * 1000)
    size = selectors.message_size(selectors.messages_after(room=private_room, after=0)[0][0])
    assert size > 2000  # 2,001 bytes of UTF-8 and the other fields
    pages, after, more = [], 0, True
    while more:
        page, more = selectors.messages_after(room=private_room, after=after, max_bytes=2 * size)
        pages.append([m.seq for m in page])
        after = page[-1].seq
    assert pages == [[1, 2], [3, 4], [5]]
    page, more = selectors.messages_after(room=private_room, after=0, max_bytes=1)
    assert [m.seq for m in page] == [1] and more  # one message larger than a page


def test_no_parley_exception_shadows_one_of_django():
    """An ``except PermissionDenied`` must not depend on which module it was imported from."""
    ours = {name for name, value in vars(exceptions).items() if inspect.isclass(value)}
    ours = {name for name in ours if getattr(exceptions, name).__module__ == exceptions.__name__}
    assert ours and not ours & set(vars(django.core.exceptions))
