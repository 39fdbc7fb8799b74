"""Emergency revocation racing token requests: no client ever receives a token the revoked key signed
after the revocation (issue 8, item 17).

Attacker: whoever holds a leaked private key, and a load balancer full of token requests in flight
while the operator revokes it. Once ``revoke_signing_key`` has returned, no token signed by that key
may reach a client, and the ledger must show every token the key signed *before* its ``key.revoked``
record: RFC 9162 §2.1 ordering is the order things happened in.

PostgreSQL only: SQLite serializes whole write transactions (``BEGIN IMMEDIATE``), so the race cannot
happen there; on PostgreSQL the token transaction reads the active key with ``SELECT ... FOR SHARE``.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client as HttpClient
from django.utils import timezone

from tests.oauth_client import form_post, verify_with_jwks
from tokens.models import LedgerRecord, SigningKey
from tokens.rotation import ensure_active_key, request_rotation, revoke_signing_key
from tokens.signing import active_signing_key

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="the race needs PostgreSQL's concurrency (DATABASE_URL=postgres://...)",
    ),
]

JWKS = "/.well-known/jwks.json"


@pytest.fixture(autouse=True)
def _no_volume_limits(settings):
    """The race is four clients asking for tokens as fast as they can: the rate limits (a separate
    concern, tests/uaa/test_rate_limits.py) would answer them 429 long before the race is over."""
    settings.UAA_RATELIMIT_TOKEN_CLIENT = 0
    settings.UAA_RATELIMIT_TOKEN_IP = 0


@dataclass
class Received:
    started: float
    received: float
    status: int
    kid: str | None = None
    jti: str | None = None
    verified_after: bool | None = None
    jwks_fetched: float = 0.0


@dataclass
class Revocation:
    kid: str
    started: float
    returned: float


def _header_and_claims(token: str) -> tuple[dict, dict]:
    import base64

    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload)


CLIENT_DEADLINE = 120.0  # seconds: the clients stop then even if the revocations have not returned


def _client_loop(auth: str, stop: threading.Event, out: list[Received]) -> None:
    http = HttpClient(raise_request_exception=False)
    deadline = time.monotonic() + CLIENT_DEADLINE
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            response = form_post(http, "/oauth/token", {"grant_type": "client_credentials"}, auth=auth)
            item = Received(started=started, received=time.monotonic(), status=response.status_code)
            if response.status_code == HTTPStatus.OK:
                token = response.json()["access_token"]
                header, claims = _header_and_claims(token)
                item.kid, item.jti = header["kid"], claims["jti"]
                jwks = http.get(JWKS).json()
                item.jwks_fetched = time.monotonic()
                try:
                    verify_with_jwks(token, jwks)
                    item.verified_after = True
                except Exception:
                    item.verified_after = False
            out.append(item)
    finally:
        connection.close()


def _revoke_loop(rounds: int, pause: float, prepublish: bool, out: list[Revocation]) -> None:
    try:
        for round_ in range(rounds):
            time.sleep(pause)
            algorithm = settings.UAA_ACCESS_TOKEN_ALG  # the key the clients' access tokens are signed with
            if prepublish and round_ % 2:
                request_rotation(algorithm=algorithm, now=timezone.now())  # a next key is waiting
            kid = SigningKey.objects.active().for_algorithm(algorithm).values_list("kid", flat=True).get()
            started = time.monotonic()
            revoke_signing_key(kid=kid, now=timezone.now(), reason="race drill")
            out.append(Revocation(kid=kid, started=started, returned=time.monotonic()))
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prepublish", [False, True], ids=["fresh-replacement", "next-key-waiting"])
def test_no_token_signed_by_a_revoked_key_reaches_a_client_after_the_revocation(service_client, prepublish):
    """Every token a client received verifies against the JWKS fetched after it was received, unless
    its key was revoked in between — and then its ledger record precedes ``key.revoked``, and the request
    was answered before the revocation returned. No 5xx, ever."""
    for algorithm in ("RS256", "ES256", "EdDSA"):
        ensure_active_key(algorithm=algorithm, now=timezone.now())
    stop = threading.Event()
    received: list[Received] = []
    revocations: list[Revocation] = []
    clients = [
        threading.Thread(target=_client_loop, args=(service_client.basic, stop, received)) for _ in range(4)
    ]
    for thread in clients:
        thread.start()
    try:
        _revoke_loop(rounds=8, pause=0.15, prepublish=prepublish, out=revocations)
    finally:
        _until_a_request_starts_after(revocations[-1].returned if revocations else 0.0, received)
        stop.set()
        for thread in clients:
            thread.join(timeout=60)

    assert received, "no token request completed"
    assert [item.status for item in received if item.status != HTTPStatus.OK] == []
    revoked = {revocation.kid: revocation for revocation in revocations}
    late = [
        (item.kid, round((item.started - revoked[item.kid].returned) * 1000, 1))
        for item in received
        if item.kid in revoked and item.started > revoked[item.kid].returned
    ]
    assert late == [], "tokens requested after the revocation returned, signed by the revoked key (ms)"
    unverified = [item for item in received if not item.verified_after]
    for item in unverified:
        revocation = revoked.get(item.kid or "")
        assert revocation is not None, "a token failed against the JWKS although its key was not revoked"
        assert revocation.started < item.jwks_fetched
    ledger_ids = _ledger_order()
    out_of_order = [
        item.kid
        for item in received
        if item.kid in revoked and ledger_ids[("token", item.jti)] > ledger_ids[("revoked", item.kid)]
    ]
    assert out_of_order == [], "token records after the key.revoked record of the key that signed them"
    assert sum(1 for item in received if item.kid in revoked) > 0  # the race was really run
    # Starvation: a revocation starved by token requests waits for as long as they keep coming, so it
    # would return only once the clients stopped at their deadline. Each one returned while they were still
    # asking: requests were answered after it (no wall-clock bound, the machine may be busy).
    starved = [
        revocation.kid
        for revocation in revocations
        if not any(item.started > revocation.returned for item in received)
    ]
    assert starved == [], "revocations that returned only after the token requests stopped"


def _until_a_request_starts_after(moment: float, received: list[Received], wait: float = 30.0) -> None:
    """Let the clients go on until one of them has started a request after ``moment`` (or ``wait`` s)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not any(item.started > moment for item in list(received)):
        time.sleep(0.05)


def _ledger_order() -> dict[tuple[str, str | None], int]:
    order: dict[tuple[str, str | None], int] = {}
    for pk, event, body in LedgerRecord.objects.values_list("pk", "event", "body"):
        record = json.loads(body)
        if event == LedgerRecord.Event.TOKEN_ISSUED:
            order[("token", record.get("jti"))] = pk
        elif event == LedgerRecord.Event.KEY_REVOKED:
            order[("revoked", record.get("subject"))] = pk
    return order


def _revoke_while_a_token_holds_the_key(revoke: Callable[[str], None]) -> tuple[SigningKey, datetime]:
    """Run ``revoke(kid)`` in another thread while this one signs with the active ES256 key, in a token's
    transaction held 0.5 s; the key, and the time at the end of that transaction (a token's iat then)."""
    key = ensure_active_key(algorithm="ES256", now=timezone.now())
    done = threading.Event()

    def run() -> None:
        try:
            revoke(key.kid)
            done.set()
        finally:
            connection.close()

    with transaction.atomic():
        assert active_signing_key("ES256").kid == key.kid
        thread = threading.Thread(target=run)
        thread.start()
        assert not done.wait(0.5), "the revocation did not wait for the token transaction"
        signed_at = timezone.now()
    thread.join(timeout=30)
    assert done.is_set()
    return key, signed_at


@pytest.mark.django_db(transaction=True)
def test_a_revocation_waits_for_a_token_being_signed_with_the_key():
    """The token transaction's shared lock: a revocation that starts while a token is being signed
    with the key takes effect after that token's transaction, never in the middle of it."""
    key, _ = _revoke_while_a_token_holds_the_key(
        lambda kid: revoke_signing_key(kid=kid, now=timezone.now(), reason="test")
    )
    with transaction.atomic():
        assert active_signing_key("ES256").kid != key.kid


@pytest.mark.django_db(transaction=True)
def test_a_token_started_while_a_revocation_is_underway_is_signed_by_the_new_key():
    """The other order: the revocation holds the key row; the token transaction waits, then signs with
    the replacement — not with the key that was revoked meanwhile, and without an error."""
    key = ensure_active_key(algorithm="EdDSA", now=timezone.now())
    got: list[str] = []

    def sign() -> None:
        try:
            with transaction.atomic():
                got.append(active_signing_key("EdDSA").kid)
        finally:
            connection.close()

    with transaction.atomic():
        revoke_signing_key(kid=key.kid, now=timezone.now(), reason="test")
        thread = threading.Thread(target=sign)
        thread.start()
        time.sleep(0.5)
        assert got == [], "the token transaction read the key while its revocation was uncommitted"
    thread.join(timeout=30)
    assert got and got[0] != key.kid
    assert SigningKey.objects.get(kid=got[0]).state == SigningKey.State.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_the_recorded_revocation_time_is_after_every_token_the_key_signed():
    """A red team's find: the command (and the API) took the revocation's time before the locks, so a
    token that held the key while the revocation waited was stamped after the key's ``revoked_at`` and
    its ``key.revoked`` record's time. Auditors compare times: the revocation is recorded when it took
    effect, after the last token the key signed."""
    key, signed_at = _revoke_while_a_token_holds_the_key(
        lambda kid: call_command("revoke_signing_key", kid, reason="leaked", stdout=io.StringIO())
    )
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_at >= signed_at
    record = LedgerRecord.objects.filter(event=LedgerRecord.Event.KEY_REVOKED).order_by("-pk").first()
    assert record is not None and record.at >= signed_at
