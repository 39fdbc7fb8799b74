"""Failed client authentication at the token, revocation and introspection endpoints is throttled, and
recorded in the ledger as counted summaries (docs/audit-ledger.md, "Failed client authentication").

The attacker is unauthenticated: anyone who can reach the endpoints. They must not be able to grow the
undeletable ledger by one record per request, make UAA verify signatures or fetch ``jwks_uri`` documents
without limit, or guess at client secrets without limit (OWASP ASVS V2.2.1; RFC 6749 §10.10: the server
MUST prevent brute-force attacks against credentials). Counters are the database rows sign-in uses
(accounts/throttling.py), shared by every worker; the answer is RFC 6585 §4 429 with Retry-After and an
RFC 6749 §5.2 body.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.test import Client as HttpClient
from django.utils import timezone
from freezegun import freeze_time

from accounts.models import ThrottleCounter
from tests.conftest import RegisteredClient
from tests.oauth_client import basic_auth, form_post
from tests.uaa.client_assertions import assertion, assertion_request, new_key, public_set
from tokens.models import LedgerRecord
from uaa.oauth import rfc7523
from uaa.oauth.models import Client
from uaa.oauth.services import register_client

FAILED = "client_authentication.failed"
LONG_USER_AGENT = "Mozilla/5.0 " + "x" * 500


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.UAA_THROTTLE_CLIENT_FAILURES = 10
    settings.UAA_THROTTLE_CLIENT_IP_FAILURES = 50
    settings.UAA_THROTTLE_WINDOW = 900
    settings.UAA_CLIENT_LOCKOUT_SECONDS = 300


@pytest.fixture
def signing_key() -> Any:
    return new_key()


@pytest.fixture
def jwt_client(db: Any, signing_key: Any) -> RegisteredClient:
    issued = register_client(
        name="Signed service",
        client_type=Client.CLIENT_CONFIDENTIAL,
        grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        token_endpoint_auth_method=Client.PRIVATE_KEY_JWT,
        jwks=public_set(signing_key),
    )
    return RegisteredClient(client=issued.client, secret=issued.client_secret)


def failures() -> list[dict[str, Any]]:
    rows = LedgerRecord.objects.filter(event=FAILED).order_by("id").values_list("body", flat=True)
    return [json.loads(body) for body in rows]


def flush(now: Any = None, *, force: bool = True) -> None:
    from uaa.oauth.audit import flush_client_authentication_failures

    flush_client_authentication_failures(now=now or timezone.now(), force=force)


def counted(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(failed attempts, throttled attempts) that ``records`` account for."""
    failed = sum(
        record["detail"].get("failures", 1 if "reason" in record["detail"] else 0) for record in records
    )
    throttled = sum(record["detail"].get("throttled", 0) for record in records)
    return failed, throttled


def secret_attempt(url: str, client_id: str, secret: str, ip: str = "198.51.100.7") -> Any:
    data = {"grant_type": "client_credentials"} if url == "/oauth/token" else {"token": "some-token"}
    return form_post(HttpClient(REMOTE_ADDR=ip), url, data, auth=basic_auth(client_id, secret))


def test_200_bad_assertions_are_cut_off_after_the_limit_and_leave_a_bounded_ledger(jwt_client, monkeypatch):
    """The review's flood: 200 assertions signed with a stranger's key, each with a 512-byte User-Agent.
    Before: 200 ledger records and 200 signature checks. After: the 11th and later get 429 without any
    signature verification or key lookup (jwks_uri fetch), and the ledger holds a bounded, counted
    summary of all 200."""
    verified: list[int] = []
    keys_read: list[int] = []
    real_verify, real_keys = rfc7523._verify_signature, rfc7523.registered_keys
    monkeypatch.setattr(rfc7523, "_verify_signature", lambda *a: verified.append(1) or real_verify(*a))
    monkeypatch.setattr(rfc7523, "registered_keys", lambda *a: keys_read.append(1) or real_keys(*a))
    stranger = new_key()
    statuses = []
    for _ in range(200):
        response = assertion_request(
            assertion(jwt_client.client_id, stranger), HTTP_USER_AGENT=LONG_USER_AGENT
        )
        statuses.append(response.status_code)
    assert statuses[:10] == [HTTPStatus.UNAUTHORIZED] * 10
    assert statuses[10:] == [HTTPStatus.TOO_MANY_REQUESTS] * 190
    assert len(verified) == len(keys_read) == 10
    assert LedgerRecord.objects.filter(event=FAILED).count() <= 2
    flush()
    records = failures()
    assert len(records) <= 3
    assert counted(records) == (10, 190)
    assert all(record["client_id"] == jwt_client.client_id for record in records)
    assert all(len(record.get("user_agent", "")) <= 128 for record in records)


@pytest.mark.parametrize("url", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_the_throttled_answer_is_429_with_retry_after_and_an_rfc_6749_error_body(service_client, url):
    """RFC 6585 §4: 429 MAY include Retry-After; RFC 6749 §5.2 body with invalid_client (the client's
    authentication did not happen: DOT/oauthlib and Keycloak answer lockouts with the ordinary failure
    code, not a new one). While locked even the right secret is refused: nothing is checked."""
    statuses = [secret_attempt(url, service_client.client_id, "wrong").status_code for _ in range(10)]
    assert statuses == [HTTPStatus.UNAUTHORIZED] * 10
    response = secret_attempt(url, service_client.client_id, service_client.secret)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS, response.content
    assert 0 < int(response["Retry-After"]) <= 300
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == "invalid_client"
    assert set(body) == {"error", "error_description"}
    assert "access_token" not in body and "active" not in body


def test_the_client_lock_spans_every_address_and_endpoint(service_client):
    """The per-client counter is one database row, whatever the worker, address or endpoint."""
    for n in range(10):
        secret_attempt(
            ["/oauth/token", "/oauth/revoke", "/oauth/introspect"][n % 3],
            service_client.client_id,
            "wrong",
            ip=f"203.0.113.{n}",
        )
    response = secret_attempt("/oauth/token", service_client.client_id, service_client.secret, ip="192.0.2.1")
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_the_ip_limit_stops_spraying_across_client_ids(service_client):
    """Unknown client_ids are counted against the address they come from (one counter per address, not
    one row per invented client_id); past the limit that address is refused for any client."""
    for _ in range(50):
        assert secret_attempt("/oauth/token", secrets.token_hex(8), "guess").status_code == 401
    own = secret_attempt("/oauth/token", service_client.client_id, service_client.secret)
    assert own.status_code == HTTPStatus.TOO_MANY_REQUESTS
    elsewhere = secret_attempt(
        "/oauth/token", service_client.client_id, service_client.secret, ip="192.0.2.44"
    )
    assert elsewhere.status_code == HTTPStatus.OK, elsewhere.content
    keys = set(ThrottleCounter.objects.exclude(key__startswith="client-ok:").values_list("key", flat=True))
    assert len(keys) == 1  # the address only: invented client_ids leave no rows (client-ok: the success)


def test_unknown_public_client_ids_count_too(db):
    """RFC 6749 §3.2.1: a public client only identifies itself; an unknown client_id is a failure."""
    data = {"grant_type": "authorization_code", "code": "x"}
    statuses = [
        form_post(HttpClient(), "/oauth/token", {**data, "client_id": secrets.token_hex(8)}).status_code
        for _ in range(51)
    ]
    assert statuses[:50] == [HTTPStatus.UNAUTHORIZED] * 50
    assert statuses[50] == HTTPStatus.TOO_MANY_REQUESTS


def test_the_lock_ends_by_itself(service_client):
    with freeze_time("2030-01-01 09:00") as clock:
        for _ in range(10):
            secret_attempt("/oauth/token", service_client.client_id, "wrong")
        assert (
            secret_attempt("/oauth/token", service_client.client_id, service_client.secret).status_code == 429
        )
        clock.tick(timedelta(seconds=301))
        response = secret_attempt("/oauth/token", service_client.client_id, service_client.secret)
        assert response.status_code == HTTPStatus.OK, response.content


def test_a_successful_authentication_forgives_the_failures_of_its_own_address(service_client):
    """As at sign-in, a success forgives the client's failures, but only those from its own address:
    guesses made meanwhile from elsewhere still count towards the client-wide lock."""
    for _ in range(2):
        for _ in range(9):
            secret_attempt("/oauth/token", service_client.client_id, "wrong")
        response = secret_attempt("/oauth/token", service_client.client_id, service_client.secret)
        assert response.status_code == HTTPStatus.OK, response.content  # 18 failures, never 10 in a row
    elsewhere = secret_attempt(
        "/oauth/token", service_client.client_id, service_client.secret, ip="192.0.2.9"
    )
    assert elsewhere.status_code == HTTPStatus.TOO_MANY_REQUESTS  # the client-wide count was not reset


def test_a_known_client_that_fails_authentication_is_recorded(service_client):
    """A wrong secret for a registered client is recorded with its client_id (first failure at once)."""
    secret_attempt("/oauth/token", service_client.client_id, "wrong")
    (record,) = failures()
    assert record["client_id"] == service_client.client_id
    assert record["detail"] == {"method": "client_secret_basic", "reason": "the client secret is wrong"}
    assert record["ip"] == "198.51.100.7"
    assert "wrong" not in json.dumps(record["hashes"] if "hashes" in record else {})


def test_failures_of_unknown_client_ids_are_summarised_per_address(db):
    """Invented client_ids are not written into the ledger; their failures are one count per address."""
    for _ in range(30):
        secret_attempt("/oauth/token", secrets.token_hex(8), "guess")
    assert LedgerRecord.objects.filter(event=FAILED).count() == 1
    flush()
    records = failures()
    assert len(records) == 2
    assert all(record.get("client_id", "") == "" for record in records)
    assert counted(records) == (30, 0)
    summary = records[-1]["detail"]
    assert summary["summary"] is True
    assert summary["reasons"] == {"no client has this client_id": 29}


def test_the_summary_is_written_when_the_window_rolls(service_client):
    """One record when a window opens; the rest of the window's count when it has ended."""
    with freeze_time("2030-01-01 09:00") as clock:
        for _ in range(3):
            secret_attempt("/oauth/token", service_client.client_id, "wrong")
        assert len(failures()) == 1
        clock.tick(timedelta(seconds=901))
        secret_attempt("/oauth/token", service_client.client_id, "wrong")
        records = failures()
        assert len(records) == 3  # the first of window 1, its summary (2 more), the first of window 2
        summary = next(record for record in records if record["detail"].get("summary"))
        assert summary["detail"]["failures"] == 2
        assert summary["detail"]["from"].startswith("2030-01-01T09:00:00")
        assert summary["client_id"] == service_client.client_id


def test_the_sealing_task_writes_the_summaries_of_ended_windows(service_client):
    """A window nobody writes to again is summarised by the next sealing run (tokens.seal_audit_ledger)."""
    from tokens.ledger import seal_tree_head

    with freeze_time("2030-01-01 09:00") as clock:
        for _ in range(4):
            secret_attempt("/oauth/token", service_client.client_id, "wrong")
        seal_tree_head(now=timezone.now())
        assert len(failures()) == 1  # the window is still open
        clock.tick(timedelta(seconds=901))
        seal_tree_head(now=timezone.now())
        records = failures()
        assert counted(records) == (4, 0)
        assert LedgerRecord.objects.filter(event=FAILED, leaf_index__isnull=True).count() == 0  # sealed


def test_the_number_of_summaries_per_window_is_capped(settings, db):
    """Many addresses (a botnet, or one IPv6 /64) cannot multiply the summaries without bound."""
    from uaa.oauth import audit

    settings.UAA_THROTTLE_CLIENT_IP_FAILURES = 1000
    audit_cap = audit.SUMMARY_KEYS_PER_WINDOW
    try:
        audit.SUMMARY_KEYS_PER_WINDOW = 5
        for n in range(20):
            secret_attempt("/oauth/token", "x", "guess", ip=f"198.51.100.{n}")
    finally:
        audit.SUMMARY_KEYS_PER_WINDOW = audit_cap
    flush()
    records = failures()
    assert len(records) <= 2 * 5 + 2
    assert counted(records) == (20, 0)


def test_ipv6_addresses_of_one_64_share_their_counter(service_client):
    """A /64 is one subscriber's allocation (RFC 6177): rotating addresses inside it is not a new caller."""
    for n in range(50):
        secret_attempt("/oauth/token", secrets.token_hex(8), "guess", ip=f"2001:db8:1:2::{n + 1:x}")
    response = secret_attempt(
        "/oauth/token", service_client.client_id, service_client.secret, ip="2001:db8:1:2:ffff::1"
    )
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS


# --- the red team's attacks on the throttle and the summaries --------------------------------------
def named(client_id: str) -> list[dict[str, Any]]:
    return [record for record in failures() if record.get("client_id") == client_id]


def test_a_flood_of_unknown_client_ids_from_1000_addresses_does_not_hide_a_registered_client(service_client):
    """Red team B4: 1000 failed Basic logins with invented client_ids from 1000 addresses (127.1.x.y) filled
    every summary slot of the window, so two wrong secrets for a registered client then landed in the
    anonymous overflow tally, and no record named it. docs/audit-ledger.md: "A known client that fails
    authentication is therefore always visible right away" (RFC 6749 §10.10: the server MUST prevent
    brute-force attacks, which needs knowing which client is attacked)."""
    for n in range(1000):
        response = secret_attempt(
            "/oauth/token", secrets.token_hex(8), "guess", ip=f"127.1.{n // 250}.{n % 250}"
        )
        assert response.status_code == HTTPStatus.UNAUTHORIZED
    for _ in range(2):
        secret_attempt("/oauth/token", service_client.client_id, "wrong", ip="203.0.113.50")
    (first,) = named(service_client.client_id)  # at once, before any summary is written
    assert first["detail"] == {"method": "client_secret_basic", "reason": "the client secret is wrong"}
    assert first["ip"] == "203.0.113.50"
    flush()
    assert counted(named(service_client.client_id)) == (2, 0)
    records = failures()
    assert counted(records) == (1002, 0)
    overflow = [record for record in records if record["detail"].get("overflow")]
    assert all(record.get("client_id", "") == "" for record in overflow)  # only the unknown ids overflow
    assert len(records) <= 2 * 1000 + 2 + 2


def test_an_ipv6_48_of_unknown_client_ids_does_not_hide_a_registered_client(settings, service_client):
    """Red team B4, the IPv6 form: a /48 holds 65,536 /64s, each counted as an address of its own."""
    from uaa.oauth import audit

    cap = audit.SUMMARY_KEYS_PER_WINDOW
    try:
        audit.SUMMARY_KEYS_PER_WINDOW = 20
        for n in range(40):
            secret_attempt("/oauth/token", secrets.token_hex(8), "guess", ip=f"2001:db8:77:{n:x}::1")
        secret_attempt("/oauth/token", service_client.client_id, "wrong", ip="2001:db8:77:ffff::1")
    finally:
        audit.SUMMARY_KEYS_PER_WINDOW = cap
    (first,) = named(service_client.client_id)
    assert first["detail"]["reason"] == "the client secret is wrong"


def test_a_registered_client_attacked_from_many_addresses_keeps_its_name_in_a_bounded_ledger(settings, db):
    """A registered client's failures always get its own records, but not one pair per attacking address
    without end: past ``ADDRESSES_PER_CLIENT`` addresses they share the client's own overflow summary."""
    from uaa.oauth import audit

    settings.UAA_THROTTLE_CLIENT_FAILURES = 1000
    victim = register_client(
        name="Victim", client_type=Client.CLIENT_CONFIDENTIAL, grant_type=Client.GRANT_CLIENT_CREDENTIALS
    ).client
    per_client = audit.ADDRESSES_PER_CLIENT
    try:
        audit.ADDRESSES_PER_CLIENT = 5
        for n in range(30):
            secret_attempt("/oauth/token", victim.client_id, "wrong", ip=f"198.51.100.{n}")
    finally:
        audit.ADDRESSES_PER_CLIENT = per_client
    flush()
    records = named(victim.client_id)
    assert counted(records) == (30, 0)
    assert len(records) <= 2 * 5 + 2
    (overflow,) = [record for record in records if record["detail"].get("overflow")]
    assert overflow["detail"]["failures"] == 30 - 5 - 1  # after the overflow's own first failure


def test_a_flood_of_garbage_assertions_does_not_lock_the_client_out_of_its_own_address(
    jwt_client, signing_key
):
    """Red team W4: ten unauthenticated requests with a garbage-signed assertion naming a private_key_jwt
    client locked that client from every address for 300 s; its next valid assertion got 429. A signature
    cannot be guessed, so the client-wide count only raises the alarm: the flooding address is limited,
    the client's own address, which never failed, is not (RFC 6749 §10.10)."""
    stranger = new_key()
    attacker = {"REMOTE_ADDR": "203.0.113.66"}
    statuses = [
        assertion_request(assertion(jwt_client.client_id, stranger), **attacker).status_code
        for _ in range(60)
    ]
    assert statuses[:10] == [HTTPStatus.UNAUTHORIZED] * 10
    assert set(statuses[10:]) == {HTTPStatus.TOO_MANY_REQUESTS}  # the flooding address itself is cut off
    response = assertion_request(assertion(jwt_client.client_id, signing_key), REMOTE_ADDR="198.51.100.20")
    assert response.status_code == HTTPStatus.OK, response.content


def test_a_distributed_flood_of_garbage_assertions_is_limited_per_address_and_raises_the_alarm(
    jwt_client, signing_key, monkeypatch, caplog
):
    """Many addresses, each sending garbage assertions for one client: each address gets its own ten
    signature checks, the client is flagged (a warning naming it), and its valid assertion still works."""
    verified: list[int] = []
    real_verify = rfc7523._verify_signature
    monkeypatch.setattr(rfc7523, "_verify_signature", lambda *a: verified.append(1) or real_verify(*a))
    stranger = new_key()
    for n in range(5):
        for _ in range(12):
            assertion_request(assertion(jwt_client.client_id, stranger), REMOTE_ADDR=f"203.0.113.{n}")
    assert len(verified) == 5 * 10
    assert any(
        record.message == "oauth.client_under_attack" and record.client_id == jwt_client.client_id
        for record in caplog.records
    )
    response = assertion_request(assertion(jwt_client.client_id, signing_key), REMOTE_ADDR="198.51.100.20")
    assert response.status_code == HTTPStatus.OK, response.content


def test_wrong_secrets_from_elsewhere_do_not_lock_a_client_out_of_the_address_it_authenticates_from(
    service_client,
):
    """Red team W4 for a secret: a client that authenticated from an address keeps it while strangers'
    wrong secrets lock everyone else out (OWASP's device cookies: a lockout that spares the devices the
    account has already been used from)."""
    home = "198.51.100.20"
    assert (
        secret_attempt("/oauth/token", service_client.client_id, service_client.secret, ip=home).status_code
        == 200
    )
    for n in range(30):
        secret_attempt("/oauth/token", service_client.client_id, "wrong", ip=f"203.0.113.{n}")
    response = secret_attempt("/oauth/token", service_client.client_id, service_client.secret, ip=home)
    assert response.status_code == HTTPStatus.OK, response.content


def test_a_distributed_guessing_attack_on_a_secret_is_still_limited(service_client, monkeypatch):
    """RFC 6749 §10.10: brute force against a client secret from 100 addresses, one guess each: after ten
    failures for the client, guesses from addresses it never authenticated from are refused unchecked,
    the right secret included, until the lock ends."""
    from uaa.oauth.validators import UAAOAuth2Validator

    checked: list[int] = []
    real_check = UAAOAuth2Validator._check_secret
    monkeypatch.setattr(
        UAAOAuth2Validator, "_check_secret", lambda self, *a: checked.append(1) or real_check(self, *a)
    )
    statuses = [
        secret_attempt(
            "/oauth/token", service_client.client_id, f"guess-{n}", ip=f"203.0.113.{n}"
        ).status_code
        for n in range(100)
    ]
    assert statuses[:10] == [HTTPStatus.UNAUTHORIZED] * 10
    assert statuses[10:] == [HTTPStatus.TOO_MANY_REQUESTS] * 90
    assert len(checked) == 10
    lucky = secret_attempt(
        "/oauth/token", service_client.client_id, service_client.secret, ip="203.0.113.200"
    )
    assert lucky.status_code == HTTPStatus.TOO_MANY_REQUESTS
