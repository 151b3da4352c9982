"""Visitors' expiry, their client address, and the re-check of their open sockets."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone

from parley.models import Message, Room, Visitor
from parley.protocol import SIGNED_OUT
from parley.realtime.access import Grant, grants_check
from parley.visitors import services
from parley.visitors.addresses import client_address, request_address

pytestmark = pytest.mark.django_db


def conversation(**fields) -> tuple[Visitor, Room]:
    visitor = Visitor.objects.create(**fields)
    room = services.conversation_for_visitor(visitor=visitor)
    Message.objects.create(room=room, seq=1, role="user", text="hi")
    return visitor, room


def test_the_command_deletes_expired_and_logged_in_visitors_with_their_conversations(
    settings, alice
):
    settings.PARLEY = {"VISITORS": {"EXPIRE_AFTER": 3600}}
    old, old_room = conversation()
    Visitor.objects.filter(pk=old.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    recent, recent_room = conversation()
    became, kept_room = conversation()
    services.visitor_carry_over(visitor=became, user=alice)

    out = StringIO()
    call_command("parley_visitors_expire", stdout=out)
    assert "Deleted 2 visitor(s)" in out.getvalue()
    assert list(Visitor.objects.all()) == [recent]
    assert set(Room.objects.all()) == {recent_room, kept_room}  # alice's now: kept
    assert not Message.objects.filter(room_id=old_room.pk).exists()


def test_the_client_address_is_the_proxys_last_entry_only_when_configured(settings):
    scope = {"client": ("10.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"1.2.3.4, 5.6.7.8")]}
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="1.2.3.4, 5.6.7.8")
    request.META["REMOTE_ADDR"] = "10.0.0.1"
    assert client_address(scope) == request_address(request) == "10.0.0.1"  # not trusted
    settings.PARLEY = {"VISITORS": {"CLIENT_IP_HEADER": "X-Forwarded-For"}}
    # The client wrote 1.2.3.4 itself; the proxy appended what it saw.
    assert client_address(scope) == request_address(request) == "5.6.7.8"


def test_the_recheck_ends_sockets_of_visitors_gone_or_logged_in(alice, settings):
    settings.PARLEY = {"VISITORS": {"ENABLED": True}}
    stays, stays_room = conversation()
    leaves, leaves_room = conversation()
    deleted, deleted_room = conversation()
    grants = [
        (1, Grant(None, stays_room.pk, None, "", visitor=stays.public_id)),
        (2, Grant(None, leaves_room.pk, None, "", visitor=leaves.public_id)),
        (3, Grant(None, deleted_room.pk, None, "", visitor=deleted.public_id)),
        (4, Grant(None, leaves_room.pk, None, "", visitor=stays.public_id)),  # not its room
    ]
    services.visitor_carry_over(visitor=leaves, user=alice)
    deleted.delete()
    assert sorted(grants_check(grants=grants)) == [
        (2, SIGNED_OUT),
        (3, SIGNED_OUT),
        (4, SIGNED_OUT),
    ]


def test_an_ipv6_client_counts_as_its_64_network():
    scope = {"client": ("2001:db8:1:2:aaaa::1", 5000), "headers": []}
    other = {"client": ("2001:db8:1:2:ffff::9", 5000), "headers": []}
    assert client_address(scope) == client_address(other) == "2001:db8:1:2::/64"
    assert client_address({"client": ("::ffff:1.2.3.4", 1), "headers": []}) == "1.2.3.4"


def test_turning_visitors_off_ends_their_open_sockets_at_the_recheck(settings):
    visitor, room = conversation()
    settings.PARLEY = {"VISITORS": {"ENABLED": False}}
    grant = Grant(None, room.pk, None, "", visitor=visitor.public_id)
    assert grants_check(grants=[(1, grant)]) == [(1, SIGNED_OUT)]


def test_a_visitor_made_meanwhile_with_the_same_identity_is_the_one_returned(settings):
    """Two first requests with one identity at once: the second insert loses the race to
    the unique constraint and finds the winner's visitor."""
    settings.PARLEY = {"VISITORS": {"IDENTITY_KEY": "k" * 32}}
    winner = Visitor.objects.create(identity="cust-7")
    signature = services.identity_signature("cust-7")
    found = services.visitor_create(address="10.0.0.1", identity="cust-7", signature=signature)
    assert found == winner and Visitor.objects.count() == 1
    assert services.conversation_for_visitor(visitor=found) == services.conversation_for_visitor(
        visitor=found
    )
