"""Credential-guessing limits (OWASP ASVS V2.2.1, RFC 6238 §5.2): per account and per IP, in the database."""

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client as HttpClient
from freezegun import freeze_time

from accounts import throttling
from accounts.models import ThrottleCounter
from tests.conftest import LOGIN, MFA, sign_in
from tests.factories import PASSWORD, UserFactory

WRONG = "not the password 123"


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.UAA_THROTTLE_ACCOUNT_FAILURES = 3
    settings.UAA_THROTTLE_IP_FAILURES = 5
    settings.UAA_THROTTLE_WINDOW = 900
    settings.UAA_LOCKOUT_SECONDS = 600


def attempt(email, password=WRONG, ip="198.51.100.7"):
    return HttpClient(REMOTE_ADDR=ip).post(LOGIN, {"email": email, "password": password})


def test_the_limit_locks_the_account_with_a_clear_message(user):
    for _ in range(2):
        assert attempt(user.email).status_code == HTTPStatus.BAD_REQUEST
    assert attempt(user.email).status_code == HTTPStatus.TOO_MANY_REQUESTS  # the third failure locks
    response = attempt(user.email, PASSWORD)  # even the right password: the account is locked
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert b"Too many failed attempts" in response.content
    assert b"try again in 10 minutes" in response.content


def test_the_counters_live_in_the_database_shared_by_every_worker(user):
    attempt(user.email)
    keys = set(ThrottleCounter.objects.values_list("key", flat=True))
    assert keys == {throttling.account_key(user.email), throttling.ip_key("198.51.100.7")}


def test_a_lock_ends_by_itself_after_the_configured_time(user):
    with freeze_time("2030-01-01 09:00") as clock:
        for _ in range(3):
            attempt(user.email)
        assert attempt(user.email, PASSWORD).status_code == HTTPStatus.TOO_MANY_REQUESTS
        clock.tick(timedelta(seconds=601))
        assert attempt(user.email, PASSWORD)["Location"] == MFA


def test_failures_outside_the_window_do_not_add_up(user):
    with freeze_time("2030-01-01 09:00") as clock:
        attempt(user.email)
        attempt(user.email)
        clock.tick(timedelta(seconds=901))
        attempt(user.email)
        assert attempt(user.email, PASSWORD)["Location"] == MFA


def test_an_unknown_address_locks_the_same_way_and_the_answers_match(user):
    """ASVS V2.2.1 / V3.2: lockout does not reveal whether the account exists."""
    for _ in range(3):
        attempt(user.email, ip="192.0.2.1")
        attempt("nobody@example.com", ip="192.0.2.2")
    known = attempt(user.email, ip="192.0.2.1")
    unknown = attempt("nobody@example.com", ip="192.0.2.2")
    assert known.status_code == unknown.status_code == HTTPStatus.TOO_MANY_REQUESTS

    def page(response, email):
        return response.content.replace(email.encode(), b"EMAIL").split(b"csrfmiddlewaretoken")[0]

    assert page(known, user.email) == page(unknown, "nobody@example.com")


def test_the_ip_limit_stops_spraying_across_accounts(db):
    users = [UserFactory() for _ in range(5)]
    for target in users:
        attempt(target.email, ip="203.0.113.9")
    other = UserFactory()
    assert attempt(other.email, PASSWORD, ip="203.0.113.9").status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert attempt(other.email, PASSWORD, ip="203.0.113.10")["Location"] == MFA


def test_wrong_second_factor_codes_count_and_lock_the_account(user):
    """RFC 6238 §5.2: the verifier MUST throttle brute-force attacks on the code."""
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    for _ in range(2):
        assert http.post(MFA, {"method": "totp", "code": "000000"}).status_code == HTTPStatus.BAD_REQUEST
    locked = http.post(MFA, {"method": "totp", "code": "000000"})
    assert locked.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert b"Too many failed attempts" in locked.content
    assert http.post(MFA, {"method": "totp", "code": "123456"}).status_code == HTTPStatus.BAD_REQUEST
    assert sign_in(HttpClient(), user).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_a_completed_sign_in_clears_the_accounts_failures(user):
    attempt(user.email)
    attempt(user.email)
    assert sign_in(HttpClient(REMOTE_ADDR="198.51.100.7"), user).status_code == HTTPStatus.FOUND
    attempt(user.email)
    attempt(user.email)
    assert sign_in(HttpClient(), user).status_code == HTTPStatus.FOUND


def test_an_admin_unlocks_a_locked_user(user, admin_client):
    for _ in range(3):
        attempt(user.email)
    response = admin_client.post(
        "/admin/accounts/user/", {"action": "unlock_sign_in", "_selected_action": [str(user.pk)]}
    )
    assert response.status_code == HTTPStatus.FOUND
    assert attempt(user.email, PASSWORD)["Location"] == MFA


def test_wrong_codes_at_enrollment_count_too(db):
    user = UserFactory(mfa=False)
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    http.get("/accounts/mfa/enroll")
    statuses = [http.post("/accounts/mfa/enroll", {"code": "abcdef"}).status_code for _ in range(4)]
    assert statuses == [HTTPStatus.BAD_REQUEST] * 3 + [HTTPStatus.TOO_MANY_REQUESTS]
    assert b"Too many failed attempts" in http.post("/accounts/mfa/enroll", {"code": "123456"}).content


@pytest.mark.parametrize(
    "data",
    [
        {"method": "totp", "code": "0" * 40},
        {"method": "backup", "code": ""},
        {"method": "webauthn", "credential": ""},
        {"method": "webauthn", "credential": "x" * 20000},
    ],
)
def test_malformed_second_factor_input_counts_like_a_wrong_code(user, data):
    http = HttpClient()
    http.post(LOGIN, {"email": user.email, "password": PASSWORD})
    statuses = [http.post(MFA, data).status_code for _ in range(3)]
    assert statuses == [HTTPStatus.BAD_REQUEST, HTTPStatus.BAD_REQUEST, HTTPStatus.TOO_MANY_REQUESTS]


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(settings, user):
    """Behind one reverse proxy every request comes from the proxy's address; the client's is the last
    X-Forwarded-For entry, and entries left of it (which the client can write) are ignored."""
    settings.UAA_TRUSTED_PROXIES = ["10.0.0.2"]
    for n in range(5):
        HttpClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}, 198.51.100.66").post(
            LOGIN, {"email": f"nobody{n}@example.com", "password": WRONG}
        )
    keys = set(ThrottleCounter.objects.filter(key__startswith="ip:").values_list("key", flat=True))
    assert keys == {"ip:198.51.100.66"}
    neighbour = HttpClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.67")
    response = neighbour.post(LOGIN, {"email": user.email, "password": PASSWORD})
    assert response["Location"] == MFA  # the proxy's other users are not locked out
    spoofed = HttpClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-ip")
    assert spoofed.post(LOGIN, {"email": user.email, "password": PASSWORD})["Location"] == MFA


def test_without_trusted_proxies_x_forwarded_for_is_ignored(user):
    for n in range(5):
        HttpClient(REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").post(
            LOGIN, {"email": f"nobody{n}@example.com", "password": WRONG}
        )
    locked = HttpClient(REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="203.0.113.200")
    assert locked.post(LOGIN, {"email": user.email, "password": PASSWORD}).status_code == 429


# --- the generic keyed counter, and client authentication's keys --------------------------------------
def test_a_keyed_counter_locks_at_its_limit_and_says_for_how_long(db):
    """OWASP ASVS V2.2.1: any credential can be given its own limit; the lock is one shared row."""
    with freeze_time("2030-01-01 09:00") as clock:
        for _ in range(3):
            throttling.count_failure(key="test:k", limit=3, lockout_seconds=120)
        assert throttling.seconds_locked(keys=["test:k", "test:other"]) == 120
        clock.tick(timedelta(seconds=30))
        throttling.count_failure(key="test:k", limit=3, lockout_seconds=120)  # does not extend the lock
        assert throttling.seconds_locked(keys=["test:k"]) == 90
        clock.tick(timedelta(seconds=91))
        assert throttling.seconds_locked(keys=["test:k"]) == 0


def test_clearing_a_key_keeps_a_running_lock(db):
    for _ in range(3):
        throttling.count_failure(key="test:k", limit=3, lockout_seconds=60)
    throttling.clear(key="test:k")
    assert throttling.seconds_locked(keys=["test:k"]) == 60


def test_client_authentication_failures_do_not_lock_sign_in_from_the_same_address(settings, user):
    """Client and sign-in limits count separately: a misbehaving service behind an office NAT does not
    lock its people out of signing in (and the reverse)."""
    settings.UAA_THROTTLE_CLIENT_IP_FAILURES = 2
    settings.UAA_CLIENT_LOCKOUT_SECONDS = 60
    for _ in range(2):
        throttling.record_client_failure(client_id=None, ip="198.51.100.7")
    assert throttling.check_client(client_id=None, ip="198.51.100.7").retry_after == 60
    assert throttling.locked_for(email=user.email, ip="198.51.100.7") == 0
    assert attempt(user.email, PASSWORD)["Location"] == MFA


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("not-an-ip", "not-an-ip"),
        ("", "unknown"),
    ],
)
def test_client_limits_count_an_ipv6_address_by_its_64(address, bucket):
    """RFC 6177: a /64 is one end site; its 2^64 addresses are one caller."""
    assert throttling.address_bucket(address) == bucket


def test_a_clients_failures_are_forgiven_by_its_success_without_a_write_otherwise(
    db, django_assert_num_queries
):
    throttling.record_client_failure(client_id="svc", ip="192.0.2.1")
    seen = throttling.check_client(client_id="svc", ip="192.0.2.1")
    assert seen.pair_failures == 1 and seen.retry_after == 0
    throttling.record_client_success(client_id="svc", ip="192.0.2.1", throttle=seen)
    assert not ThrottleCounter.objects.filter(key=throttling.client_address_key("svc", "192.0.2.1")).exists()
    clean = throttling.check_client(client_id="svc", ip="192.0.2.1")
    assert clean.known_since is not None  # the address is remembered as one the client works from
    with django_assert_num_queries(0):
        throttling.record_client_success(client_id="svc", ip="192.0.2.1", throttle=clean)
