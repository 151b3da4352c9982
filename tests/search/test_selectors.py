"""The search of members' messages on the database the tests run on (SQLite, or PostgreSQL
with DATABASE_URL): the index, the ranking, who sees what, hostile input."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.utils import timezone

from parley.models import Message, Room
from parley.rooms import services
from parley.search import sql
from parley.search.schema import tsvector
from parley.search.selectors import messages_search
from parley.search.text import QueryTooLong

pytestmark = pytest.mark.django_db


def say(room: Room, author, text: str) -> Message:
    message, _ = services.message_post(room=room, author=author, text=text)
    return message


def store(**fields) -> Message:
    """A message stored as answers and edits are (parley/answers/records.py)."""
    now = timezone.now()
    message = Message(created_at=now, updated_at=now, **fields)
    assert services.message_store(message)
    return message


def answer(room: Room, question: Message, text: str, **fields) -> Message:
    return store(room=room, role=Message.Role.ASSISTANT, reply_to=question, text=text, **fields)


def found(user, query: str, **kwargs) -> list[str]:
    return [hit.message.text for hit in messages_search(user=user, query=query, **kwargs).hits]


def test_finds_the_words_in_any_order_best_match_first(alice, private_room):
    say(private_room, alice, "The harbour ferry leaves at noon")
    say(private_room, alice, "Ferry tickets: the ferry, the ferry and the ferry again")
    say(private_room, alice, "Nothing to do with boats")
    assert found(alice, "ferry") == [
        "Ferry tickets: the ferry, the ferry and the ferry again",
        "The harbour ferry leaves at noon",
    ]
    assert found(alice, "NOON ferry") == ["The harbour ferry leaves at noon"]
    assert found(alice, "ferry submarine") == []


def test_a_quoted_phrase_must_appear_in_its_order(alice, private_room):
    say(private_room, alice, "book the table for dinner")
    say(private_room, alice, "dinner table booked")
    assert found(alice, '"dinner table"') == ["dinner table booked"]
    both = ["book the table for dinner", "dinner table booked"]
    assert sorted(found(alice, "dinner table")) == both


def test_hits_name_their_room_and_author_and_mark_the_match(alice, bob, shared_room):
    question = say(shared_room, bob, "Where is the lighthouse?")
    answer(shared_room, question, "The lighthouse stands on the northern cape.")
    hits = messages_search(user=alice, query="lighthouse").hits
    assert {hit.message.room for hit in hits} == {shared_room}
    assert {(hit.message.role, hit.message.author) for hit in hits} == {
        ("user", bob),
        ("assistant", None),
    }
    for hit in hits:
        assert [part.text for part in hit.snippet if part.marked] == ["lighthouse"]
        assert "".join(part.text for part in hit.snippet) == hit.message.text


def test_only_rooms_the_user_is_a_member_of_now(alice, bob, make_user, shared_room):
    carol = make_user("carol")
    mine = services.room_create(owner=carol, title="Carol's", kind=Room.Kind.PRIVATE)
    say(mine, carol, "secret plans for the zeppelin")
    say(shared_room, alice, "zeppelin meeting on friday")
    assert found(bob, "zeppelin") == ["zeppelin meeting on friday"]
    assert found(carol, "zeppelin") == ["secret plans for the zeppelin"]
    services.room_member_remove(room=shared_room, user=bob, by=alice)
    assert found(bob, "zeppelin") == []
    assert found(AnonymousUser(), "zeppelin") == []


def test_the_limit_counts_only_what_the_user_may_read(alice, bob, make_user, shared_room):
    """Hidden rows are filtered before the limit: a page is never short because of them."""
    carol = make_user("carol")
    theirs = services.room_create(owner=carol, title="Carol's", kind=Room.Kind.PRIVATE)
    for n in range(30):
        say(theirs, carol, f"quokka sighting number {n} quokka quokka")
    for n in range(3):
        say(shared_room, alice, f"one quokka seen, day {n}")
    results = messages_search(user=bob, query="quokka", limit=2)
    assert len(results.hits) == 2 and results.more
    rest = messages_search(user=bob, query="quokka", limit=2, offset=2)
    assert len(rest.hits) == 1 and not rest.more
    assert {hit.message.room for hit in [*results.hits, *rest.hits]} == {shared_room}


def test_an_edited_message_is_found_by_its_new_text_only(alice, private_room):
    message = say(private_room, alice, "meet at the old mill")
    message.text = "meet at the new bakery"
    message.save()
    assert found(alice, "mill") == []
    assert found(alice, "bakery") == ["meet at the new bakery"]
    Message.objects.filter(pk=message.pk).update(text="meet at the station")
    assert found(alice, "bakery") == []
    assert found(alice, "station") == ["meet at the station"]


def test_only_the_versions_the_room_page_shows(alice, private_room):
    question = say(private_room, alice, "tell me about walruses")
    first = answer(private_room, question, "walruses: first attempt")
    answer(private_room, question, "walruses: second attempt", version_of=first)
    assert found(alice, "attempt") == ["walruses: second attempt"]
    # A question edited: its old version, and the answers to it, are no longer shown.
    store(
        room=private_room, role=Message.Role.USER, author=alice, version_of=question,
        text="tell me about narwhals and walruses",
    )  # fmt: skip
    assert found(alice, "walruses") == ["tell me about narwhals and walruses"]


def test_a_streaming_answer_is_found_once_it_ends(alice, private_room):
    question = say(private_room, alice, "a question")
    streaming = answer(private_room, question, "partial aardvark", status="streaming")
    assert found(alice, "aardvark") == []
    Message.objects.filter(pk=streaming.pk).update(text="partial aardvark text, more")
    assert found(alice, "aardvark") == []
    streaming.status = Message.Status.COMPLETE
    streaming.text = "the whole aardvark answer"
    streaming.save()
    assert found(alice, "aardvark") == ["the whole aardvark answer"]


def test_a_deleted_room_or_message_is_found_no_more(alice, private_room, shared_room):
    say(private_room, alice, "pelican notes")
    gone = say(shared_room, alice, "pelican plans")
    gone.delete()
    assert found(alice, "pelican") == ["pelican notes"]
    services.room_delete(room=private_room, by=alice)
    assert found(alice, "pelican") == []


HOSTILE = [
    '"',
    '""',
    '"unclosed phrase',
    "NEAR(a b)",
    "a NEAR b",
    "text:pelican",
    "pel*",
    "-pelican",
    "pelican OR",
    "AND OR NOT",
    "(pelican",
    ")",
    "^pelican",
    "pelican & | ! <-> :*",
    "'; DROP TABLE parley_message; --",
    "1' OR '1'='1",
    "\\",
    "%_%",
    "{text}: pelican",
    "\x00pelican",
    "ñandú 漢字 🦩",
    "   ",
    "",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_no_input_is_an_error(alice, private_room, query):
    say(private_room, alice, "pelican ñandú 漢字 🦩 text")
    results = messages_search(user=alice, query=query)
    assert all(hit.message.room == private_room for hit in results.hits)
    assert Message.objects.count() == 1


def test_syntax_in_the_input_is_read_as_words(alice, private_room):
    say(private_room, alice, "pelican NEAR the text")
    say(private_room, alice, "ñandú")
    # Words joined by punctuation are a phrase, as both databases read "foo-bar".
    assert found(alice, "pelican:near") == ["pelican NEAR the text"]
    assert found(alice, "text:pelican") == []
    assert found(alice, "NEAR( pelican") == ["pelican NEAR the text"]
    assert found(alice, "-pelican") == ["pelican NEAR the text"]
    assert found(alice, "ÑANDÚ") == ["ñandú"]
    assert found(alice, "*") == []


def test_tags_addresses_and_paths_are_words_on_either_database(alice, private_room):
    say(private_room, alice, "wrap it in <section> and mail ops@example.com, see docs/a-b.md")
    for query in ["section", "example", "ops@example.com", "a-b", "docs/a-b.md", "md"]:
        assert found(alice, query) == [
            "wrap it in <section> and mail ops@example.com, see docs/a-b.md"
        ], query


def test_a_query_too_long_is_refused(alice, settings):
    settings.PARLEY = {"SEARCH_MAX_QUERY_CHARS": 10}
    assert found(alice, "a" * 10) == []
    with pytest.raises(QueryTooLong, match="at most 10 characters"):
        messages_search(user=alice, query="a" * 11)


def test_the_index_is_used(alice, private_room):
    """The database's own index answers, not a scan of every message."""
    say(private_room, alice, "indexed words")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
            cursor.execute(
                f"EXPLAIN SELECT id FROM parley_message WHERE {tsvector('simple')}"
                " @@ websearch_to_tsquery('simple'::regconfig, 'indexed')"
                " AND status <> 'streaming'"
            )
            plan = " ".join(row[0] for row in cursor.fetchall())
            cursor.execute("SET enable_seqscan = on")
            assert "parley_message_search" in plan
        else:
            cursor.execute(
                "SELECT rowid FROM parley_message_search WHERE parley_message_search MATCH ?",
                ['"indexed"'],
            )
            assert len(cursor.fetchall()) == 1


def test_an_invitee_who_has_not_accepted_finds_nothing(alice, make_user, shared_room):
    carol = make_user("carol")
    say(shared_room, alice, "the invitation-only roadmap")
    services.invitation_create(room=shared_room, by=alice, username="carol")
    assert found(carol, "roadmap") == []


def test_the_newest_matches_are_the_ones_ranked(alice, private_room, monkeypatch):
    """Past ``RANKED`` matches, the newest are ranked and the older are not found: the cost
    of ranking stays bounded (bench/README.md, "Search")."""
    monkeypatch.setattr(sql, "RANKED", 3)
    say(private_room, alice, "kestrel kestrel kestrel kestrel, the oldest")
    for n in range(4):
        say(private_room, alice, f"a kestrel, number {n}, among other birds and words")
    say(private_room, alice, "kestrel kestrel, the newest")
    assert found(alice, "kestrel") == [
        "kestrel kestrel, the newest",
        "a kestrel, number 3, among other birds and words",
        "a kestrel, number 2, among other birds and words",
    ]
    assert found(alice, "kestrel", offset=3) == []


def test_other_databases_read_every_word_with_like(alice, bob, shared_room, monkeypatch):
    """MariaDB's, MySQL's or Oracle's search: no index, the same rules. Its statement is
    plain SQL, run here on this database with that branch chosen."""
    say(shared_room, alice, "Osprey nests on the BRIDGE")
    say(shared_room, alice, "an osprey, alone")
    monkeypatch.setattr(connection, "vendor", "mysql")
    assert found(bob, "bridge OSPREY") == ["Osprey nests on the BRIDGE"]
    assert found(bob, "osprey") == ["an osprey, alone", "Osprey nests on the BRIDGE"]
    assert found(bob, "50%_off") == []
