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
    settings.UAA_TRUSTED_PROXIES = 1
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
