"""Attack: rotating through one IPv6 /64 to escape the sign-in limit per client address.

Attacker: guesses passwords of many accounts (password spraying) from one host with an IPv6 /64, which
an ordinary subscriber gets (RFC 6177) and within which every address is free to use. Counted per raw
address, each guess can come from a new one and the per-address limit never trips. The sign-in limit
must count a /64 as one client, as client authentication already does (accounts/throttling.py
``address_bucket``); IPv4 addresses still count one by one.
"""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.test import Client as HttpClient

from accounts import throttling
from tests.conftest import LOGIN
from tests.factories import UserFactory

WRONG = "not the password 123"


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 100
    settings.UAA_THROTTLE_IP_FAILURES = 5


def _guess(email, ip):
    return HttpClient(REMOTE_ADDR=ip).post(LOGIN, {"email": email, "password": WRONG})


def test_guesses_from_fresh_addresses_of_one_ipv6_64_share_one_limit(db):
    """OWASP ASVS V2.2.1: the fifth failure from the /64 locks it, whichever of its addresses comes next."""
    users = [UserFactory() for _ in range(6)]
    answers = [_guess(user.email, f"2001:db8:1:2::{n + 1:x}").status_code for n, user in enumerate(users)]
    assert answers[:4] == [HTTPStatus.BAD_REQUEST] * 4
    assert answers[4:] == [HTTPStatus.TOO_MANY_REQUESTS] * 2
    assert _guess(users[0].email, "2001:db8:1:2:ffff::1").status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_another_64_and_ipv4_neighbours_are_counted_apart(db):
    user = UserFactory()
    for n in range(5):
        _guess(user.email, f"2001:db8:1:2::{n + 1:x}")
    assert _guess(user.email, "2001:db8:1:3::1").status_code == HTTPStatus.BAD_REQUEST
    for n in range(4):
        _guess(user.email, f"192.0.2.{n + 1}")
    assert _guess(user.email, "192.0.2.200").status_code == HTTPStatus.BAD_REQUEST


def test_the_sign_in_key_of_an_address_is_its_64():
    assert throttling.ip_key("2001:db8:1:2::1") == throttling.ip_key("2001:db8:1:2:abcd::9")
    assert throttling.ip_key("::ffff:192.0.2.1") == throttling.ip_key("192.0.2.1")
    assert throttling.ip_key("192.0.2.1") != throttling.ip_key("192.0.2.2")
