"""Behind the reverse proxies named by UAA_TRUSTED_PROXIES, throttling and the audit ledger see the same
client address; X-Forwarded-For from any other peer is the client's own claim and is ignored (issue 9 item 8).

Attacker: a client that sends ``X-Forwarded-For`` itself, straight to UAA or through the proxy, to be counted
(throttling) and recorded (ledger) as another address: to spread guesses over invented addresses, or to lock
out someone else's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client as HttpClient

from tokens.clientip import client_address
from tokens.models import LedgerRecord


def failed_sign_in_address(**meta: Any) -> str:
    HttpClient().post(
        "/accounts/login", {"email": "nobody@example.com", "password": "wrong password"}, **meta
    )
    record = LedgerRecord.objects.filter(event=LedgerRecord.Event.SIGN_IN_FAILED).get()
    return json.loads(record.body)["ip"]


def test_the_ledger_records_the_address_the_trusted_proxy_saw(db, settings):
    settings.UAA_TRUSTED_PROXIES = ["10.0.0.0/24"]
    address = failed_sign_in_address(HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9", REMOTE_ADDR="10.0.0.2")
    assert address == "203.0.113.9"


def test_x_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(db, settings):
    """The attack: a client connecting straight to UAA (not through the proxy) names another address."""
    settings.UAA_TRUSTED_PROXIES = ["10.0.0.0/24"]
    address = failed_sign_in_address(HTTP_X_FORWARDED_FOR="1.2.3.4", REMOTE_ADDR="198.51.100.9")
    assert address == "198.51.100.9"


def test_without_trusted_proxies_a_forwarded_header_is_ignored(db, settings):
    settings.UAA_TRUSTED_PROXIES = []
    assert failed_sign_in_address(HTTP_X_FORWARDED_FOR="198.51.100.7", REMOTE_ADDR="10.0.0.2") == "10.0.0.2"


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        # The proxy appended the address it saw; what the client wrote further left is never believed.
        ("10.0.0.2", "1.2.3.4, 203.0.113.9", "203.0.113.9"),
        # A load balancer in front of the proxy, both listed: the first address from the right that is not.
        ("10.0.0.2", "1.2.3.4, 203.0.113.9, 192.0.2.3", "203.0.113.9"),
        # ... and a client that writes the load balancer's address itself gains nothing.
        ("10.0.0.2", "192.0.2.3, 203.0.113.9, 192.0.2.3", "203.0.113.9"),
        # Every hop a trusted proxy (a request from inside): the leftmost.
        ("10.0.0.2", "10.0.0.7", "10.0.0.7"),
        # Garbage where a trusted proxy's entry should be: the last address known, the proxy's.
        ("10.0.0.2", "1.2.3.4, not-an-ip", "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", ",,,", "10.0.0.2"),
        # An IPv4 peer on a dual-stack socket, and an IPv6 client.
        ("::ffff:10.0.0.2", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "2001:db8::1", "2001:db8::1"),
        # Peers that are not listed: their own address, whatever they say.
        ("10.0.1.2", "1.2.3.4", "10.0.1.2"),
        ("192.0.2.4", "1.2.3.4", "192.0.2.4"),  # next to the load balancer, but not it
        ("198.51.100.9", "10.0.0.2, 1.2.3.4", "198.51.100.9"),
    ],
)
def test_the_client_address_is_the_first_untrusted_hop_from_the_right(settings, remote, forwarded, expected):
    settings.UAA_TRUSTED_PROXIES = ["10.0.0.0/24", "192.0.2.3"]
    meta = {"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": forwarded}
    assert client_address(meta) == expected


def test_by_default_only_this_hosts_loopback_is_a_trusted_proxy(settings):
    """The default (a proxy on the same host, as gunicorn's own --forwarded-allow-ips default)."""
    assert settings.UAA_TRUSTED_PROXIES == ["127.0.0.1/32", "::1/128"]
    assert (
        client_address({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}) == "203.0.113.9"
    )
    assert client_address({"REMOTE_ADDR": "203.0.113.8", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}) == "203.0.113.8"
