"""Eight token requests racing with one refresh token: one successor, the rest ``invalid_grant``.

Attacker: holds a stolen refresh token and presents it at the same moment as the legitimate client,
hoping for a second live successor (two branches of one grant, one of them theirs). They must not get
one: exactly one request rotates the token, every other presentation is a reuse of the now-rotated
token (RFC 9700 §4.14.2), answered ``invalid_grant`` (RFC 6749 §5.2) — never a 5xx — and revokes the
family, so the successor the winner received is dead too. The ledger shows one refresh per successor.

The token request is one transaction that locks the refresh-token row before it is checked (see
``uaa/oauth/refresh_tokens.py``): on PostgreSQL the racing requests queue on that lock; on SQLite
``BEGIN IMMEDIATE`` serializes the whole transaction, and the racers wait for it (no "database is
locked").
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client as HttpClient
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from tests.oauth_client import form_post
from tests.uaa.endpoints import credentials, refresh, userinfo
from tokens.models import LedgerRecord

RACERS = 8
ROUNDS = 10
ENGINE = settings.DATABASES["default"]["ENGINE"]


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass
class Round:
    statuses: list[int] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _race(registered: Any, refresh_token: str) -> Round:
    """``RACERS`` threads, each with its own HTTP client and database connection, released together."""
    how = credentials(registered)
    data = {**how["body"], "grant_type": "refresh_token", "refresh_token": refresh_token}
    barrier = threading.Barrier(RACERS)
    lock = threading.Lock()
    result = Round()

    def present() -> None:
        try:
            http = HttpClient(raise_request_exception=False)
            barrier.wait(timeout=30)
            response = form_post(http, "/oauth/token", data, auth=how["auth"])
            try:
                body = response.json()
            except ValueError:
                body = response.content[:200]
            with lock:
                result.statuses.append(response.status_code)
                result.bodies.append(body)
        finally:
            connection.close()

    threads = [threading.Thread(target=present) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return result


def _check(registered: Any, refresh_token: str, result: Round) -> None:
    """Exactly one successor; everyone else ``invalid_grant``; the family revoked; the ledger agrees."""
    winners = [body for status, body in zip(result.statuses, result.bodies) if status == HTTPStatus.OK]
    others = [
        (status, body) for status, body in zip(result.statuses, result.bodies) if status != HTTPStatus.OK
    ]
    if len(result.statuses) != RACERS:
        result.problems.append(f"{len(result.statuses)} of {RACERS} requests answered")
    if len(winners) != 1:
        result.problems.append(f"{len(winners)} successors")
    for status, body in others:
        error = body.get("error") if isinstance(body, dict) else body
        if status != HTTPStatus.BAD_REQUEST or error != "invalid_grant":
            result.problems.append(f"{status} {error}")
    # The ledger: one refresh record per successor, naming the presented token and the successor.
    refreshes = [
        json.loads(body)
        for body in LedgerRecord.objects.filter(event=LedgerRecord.Event.TOKEN_ISSUED).values_list(
            "body", flat=True
        )
    ]
    refreshes = [
        record
        for record in refreshes
        if record.get("hashes", {}).get("previous_refresh_token") == _sha256(refresh_token)
    ]
    if len(refreshes) != len(winners):
        result.problems.append(f"{len(refreshes)} refresh records for {len(winners)} successors")
    if len(winners) == 1 and refreshes:
        if refreshes[0]["hashes"].get("refresh_token") != _sha256(winners[0]["refresh_token"]):
            result.problems.append("the refresh record names another successor")
    # The database: the presented token has (at most) one successor row, in its family.
    refresh_tokens = get_refresh_token_model().objects
    presented = refresh_tokens.filter(token_checksum=_sha256(refresh_token)).first()
    if presented is None:
        result.problems.append("the presented refresh token is gone")
        return
    family = refresh_tokens.filter(token_family=presented.token_family).exclude(pk=presented.pk)
    if family.count() != len(winners):
        result.problems.append(f"{family.count()} successor rows for {len(winners)} successors")
    if get_access_token_model().objects.filter(source_refresh_token=presented).count() > 1:
        result.problems.append("several access tokens from one refresh token")
    # The losers' presentations are reuse (no grace period): each is recorded, the family is revoked.
    reused = LedgerRecord.objects.filter(
        event=LedgerRecord.Event.REFRESH_TOKEN_REUSED, body__contains=_sha256(refresh_token)
    ).count()
    if reused != len(others):
        result.problems.append(f"{reused} reuse records for {len(others)} refused presentations")
    if refresh_tokens.filter(token_family=presented.token_family, revoked__isnull=True).exists():
        result.problems.append("a live refresh token left in the family")
    for body in winners:
        if userinfo(body["access_token"]).status_code != HTTPStatus.UNAUTHORIZED:
            result.problems.append("the successor's access token still works after the reuse")


def _run_rounds(code_flow: Any, registered: Any) -> None:
    failures = []
    for round_ in range(ROUNDS):
        refresh_token = code_flow(registered)["tokens"]["refresh_token"]
        result = _race(registered, refresh_token)
        _check(registered, refresh_token, result)
        if result.problems:
            failures.append((round_, sorted(result.statuses), result.problems))
    assert failures == [], f"{len(failures)} of {ROUNDS} rounds went wrong: {failures}"


CLIENTS = pytest.mark.parametrize("kind", ["confidential", "public"])


@pytest.mark.postgres
@pytest.mark.skipif(ENGINE != "django.db.backends.postgresql", reason="needs DATABASE_URL=postgres://...")
@pytest.mark.django_db(transaction=True)
@CLIENTS
def test_racing_refreshes_on_postgresql_yield_one_successor_and_invalid_grant_for_the_rest(
    code_flow, confidential_client, public_client, kind
):
    """RFC 6749 §6: "The authorization server MAY revoke the old refresh token after issuing a new
    refresh token"; RFC 9700 §4.14.2: with rotation, a refresh token presented after it was rotated is
    reuse, and the server revokes the active refresh token. RFC 6749 §5.2: ``invalid_grant`` when the
    refresh token is invalid or revoked. Eight simultaneous presentations, ten times over."""
    _run_rounds(code_flow, confidential_client if kind == "confidential" else public_client)


@pytest.mark.skipif(ENGINE != "django.db.backends.sqlite3", reason="the SQLite variant")
@pytest.mark.django_db(transaction=True)
@CLIENTS
def test_racing_refreshes_on_sqlite_wait_for_each_other_and_never_fail_with_database_locked(
    code_flow, confidential_client, public_client, kind
):
    """RFC 6749 §5.2 and RFC 9700 §4.14.2 as above, on SQLite: the write transactions queue behind
    ``BEGIN IMMEDIATE`` with a busy timeout, so no racer gets a 500 ("database is locked")."""
    _run_rounds(code_flow, confidential_client if kind == "confidential" else public_client)


@pytest.mark.postgres
@pytest.mark.skipif(ENGINE != "django.db.backends.postgresql", reason="needs DATABASE_URL=postgres://...")
@pytest.mark.django_db(transaction=True)
def test_a_refresh_token_revoked_while_its_refresh_waits_yields_no_successor(code_flow, confidential_client):
    """RFC 7009 §2.1: "the token cannot be used again after the revocation"; RFC 6749 §5.2: a revoked
    refresh token is ``invalid_grant``. The token request locks the row *before* checking it, so a
    refresh that waits for a transaction rotating or revoking the token checks what that one committed,
    not the live token it saw before waiting."""
    refresh_token = code_flow(confidential_client)["tokens"]["refresh_token"]
    done = threading.Event()
    responses: list[Any] = []

    def present() -> None:
        try:
            responses.append(refresh(confidential_client, refresh_token))
            done.set()
        finally:
            connection.close()

    with transaction.atomic():  # another request holding the token: it revokes it, then commits
        rows = get_refresh_token_model().objects.select_for_update()
        held = rows.get(token_checksum=_sha256(refresh_token))
        thread = threading.Thread(target=present)
        thread.start()
        assert not done.wait(0.5), "the refresh did not wait for the row lock"
        held.revoke()
    thread.join(timeout=30)
    assert [response.status_code for response in responses] == [HTTPStatus.BAD_REQUEST]
    assert responses[0].json()["error"] == "invalid_grant"
    refresh_tokens = get_refresh_token_model().objects
    presented = refresh_tokens.get(token_checksum=_sha256(refresh_token))
    assert not refresh_tokens.filter(token_family=presented.token_family).exclude(pk=presented.pk).exists()
