"""A failed client authentication costs what a successful one does, whoever it names (issue 12, "Bad input").

The attacker is anyone who can reach the token endpoint: they enumerate client_ids by the time an answer
takes (an unknown client_id against a registered one with a wrong secret), then aim their guesses at the
registered ones. They must not learn from the work UAA does which of the two a client_id is. Timing is
not tested here (it is noise on a shared machine; bench/run.py --only auth-timing measures it); the work is:
the SQL statements each request sends, with their text, and the secret hashes it computes, which must be
the same for an unknown client_id and a wrong secret, and no more than a successful request's. Two hashes
each since issue 13: the current secret and a rotation's previous one, with stand-ins where there is none.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client as HttpClient
from django.utils import timezone
from freezegun import freeze_time

from accounts import throttling
from accounts.models import ThrottleCounter
from tests.conftest import RegisteredClient
from tests.oauth_client import form_post
from tokens.models import LedgerRecord
from uaa.oauth import client_cache, hashers

ADDRESS = "198.51.100.23"
BODY = {"grant_type": "client_credentials"}


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@contextmanager
def work_done(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """The statements sent (their text before the parameters are bound, and how many parameters) and
    the secret hashes computed (calls of the client-secret hasher's digest) while the block runs."""
    done: dict[str, list[Any]] = {"sql": [], "hashes": []}
    digest = hashers._digest

    def counting(secret: str, salt: str) -> str:
        done["hashes"].append(len(salt))
        return digest(secret, salt)

    def capture(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        done["sql"].append((sql, len(params or ())))
        return execute(sql, params, many, context)

    with monkeypatch.context() as patched, connection.execute_wrapper(capture):
        patched.setattr(hashers, "_digest", counting)
        yield done


def attempt(auth: str) -> Any:
    return form_post(HttpClient(REMOTE_ADDR=ADDRESS), "/oauth/token", BODY, auth=auth)


@pytest.fixture
def requests(service_client: RegisteredClient) -> dict[str, str]:
    """The three requests, each sent once first (a worker's warm state: the client cache, the signing key,
    the failure tally of the address's window)."""
    sent = {
        "unknown client_id": basic("no-such-client", "x" * 43),
        "wrong secret": basic(service_client.client_id, "x" * 43),
        "right secret": basic(service_client.client_id, service_client.secret or ""),
    }
    for auth in sent.values():
        attempt(auth)
    return sent


def measured(auth: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, list[Any]]]:
    with work_done(monkeypatch) as done:
        response = attempt(auth)
    return response.status_code, done


@pytest.mark.django_db(transaction=True)
def test_an_unknown_client_id_sends_the_statements_a_wrong_secret_sends(requests, monkeypatch):
    """Same statements, same text, same number of parameters, in the same order: the counters of an unknown
    client_id are written by the statement that writes a registered client's (its client rows filtered out
    by a parameter), and neither reads the client again to count the failure."""
    unknown_status, unknown = measured(requests["unknown client_id"], monkeypatch)
    wrong_status, wrong = measured(requests["wrong secret"], monkeypatch)
    assert (unknown_status, wrong_status) == (401, 401)
    assert unknown["sql"] == wrong["sql"], "\n".join(
        f"{u[0][:100]!r:104} | {w[0][:100]!r}" for u, w in zip(unknown["sql"], wrong["sql"], strict=False)
    )
    assert not [sql for sql, _ in wrong["sql"] if sql.startswith(("SAVEPOINT", "RELEASE"))]
    assert not [sql for sql, _ in wrong["sql"] if "FOR UPDATE" in sql]


@pytest.mark.django_db(transaction=True)
def test_a_failure_sends_no_more_statements_than_a_success(requests, monkeypatch):
    """A success does not skip what a failure does in a way that shows: a failure writes its counters and
    its tally in two statements; a success its token, its key's confirmation and its record in one on
    PostgreSQL (so a failure has one statement more there), in three on SQLite."""
    right_status, right = measured(requests["right secret"], monkeypatch)
    wrong_status, wrong = measured(requests["wrong secret"], monkeypatch)
    assert (right_status, wrong_status) == (200, 401)
    extra = 1 if connection.vendor == "postgresql" else 0
    assert len(wrong["sql"]) <= len(right["sql"]) + extra, (wrong["sql"], right["sql"])


@pytest.mark.django_db(transaction=True)
def test_each_request_computes_the_same_two_secret_hashes(requests, monkeypatch):
    """An unknown client_id is verified against a hash made by the same hasher with a salt as long as a
    client's (hashers.UNKNOWN_CLIENT_SECRET), so it costs the hash and comparison a wrong secret costs; and
    every request is verified against the previous secret of a rotation's grace window too, or that
    stand-in where none runs (issue 13; tests/uaa/test_client_secret_grace.py with a window running)."""
    hashes = {name: measured(auth, monkeypatch)[1]["hashes"] for name, auth in requests.items()}
    salt = len(hashers.UNKNOWN_CLIENT_SECRET.split("$")[1])
    assert hashes == {name: [salt, salt] for name in requests}
    assert hashers.is_client_secret_hash(hashers.UNKNOWN_CLIENT_SECRET)


@pytest.mark.django_db(transaction=True)
def test_a_secret_in_the_body_for_an_unknown_client_id_is_hashed_too(service_client, monkeypatch):
    unknown = {**BODY, "client_id": "no-such-client", "client_secret": "x" * 43}
    wrong = {**BODY, "client_id": service_client.client_id, "client_secret": "x" * 43}
    for data in (unknown, wrong):
        form_post(HttpClient(REMOTE_ADDR=ADDRESS), "/oauth/token", data)
    seen = []
    for data in (unknown, wrong):
        with work_done(monkeypatch) as done:
            assert form_post(HttpClient(REMOTE_ADDR=ADDRESS), "/oauth/token", data).status_code == 401
        seen.append(done)
    assert seen[0]["hashes"] == seen[1]["hashes"] == [22, 22]  # the current (or stand-in), the previous
    assert seen[0]["sql"] == seen[1]["sql"]


@pytest.mark.django_db(transaction=True)
def test_a_registered_client_ids_first_failure_from_an_address_costs_what_an_unknown_ids_next_one_does(
    requests, client_factory, monkeypatch
):
    """The first failure of a window for a (client, address) opens its tally and appends its record; an
    unknown client_id's next failure from an address already counted only counts. Were opening a tally
    dearer, a prober could warm the address with one invented id and then learn each candidate's
    registration from its first failure. On PostgreSQL both are the same statements (the record is in the
    tally's statement); SQLite appends the record in a statement of its own. (The client is in this
    process's client cache, as a client in use is; the first use of a client in a worker reads its row,
    docs/performance.md "Failed client authentication".)"""
    fresh = client_factory(name="Another service", grant_type="client-credentials", redirect_uris=[])
    client_cache.get_client(fresh.client_id)
    _, unknown = measured(requests["unknown client_id"], monkeypatch)
    _, first = measured(basic(fresh.client_id, "x" * 43), monkeypatch)
    if connection.vendor == "postgresql":
        assert first["sql"] == unknown["sql"]
    else:
        assert first["sql"][:-1] == unknown["sql"] and "tokens_ledgerrecord" in first["sql"][-1][0]
    records = LedgerRecord.objects.filter(event=LedgerRecord.Event.CLIENT_AUTHENTICATION_FAILED)
    assert records.filter(client_id=fresh.client_id).count() == 1  # still a record at once


@pytest.mark.django_db(transaction=True)
def test_invented_client_ids_still_leave_no_rows_behind(db):
    """accounts/throttling.py: unknown client_ids count against the address only."""
    for number in range(5):
        assert attempt(basic(f"invented-{number}", "x")).status_code == 401
    keys = set(ThrottleCounter.objects.values_list("key", flat=True))
    assert keys == {throttling.client_ip_key(ADDRESS)}
    assert ThrottleCounter.objects.get().failures == 5


# --- the one-statement count keeps count_failure's rule --------------------------------------------------
@pytest.fixture
def limits(settings: Any) -> Any:
    settings.UAA_THROTTLE_CLIENT_FAILURES = 3
    settings.UAA_THROTTLE_CLIENT_IP_FAILURES = 5
    settings.UAA_THROTTLE_WINDOW = 900
    settings.UAA_CLIENT_LOCKOUT_SECONDS = 300
    return settings


def counter(key: str) -> ThrottleCounter:
    return ThrottleCounter.objects.get(key=key)


def test_the_limit_th_failure_locks_once_and_further_failures_do_not_extend_the_lock(db, limits):
    start = timezone.now().replace(microsecond=0)
    with freeze_time(start) as clock:
        started = [throttling.record_client_failure(client_id="svc", ip=ADDRESS) for _ in range(3)]
        assert started == [False, False, True]  # the third starts the client-wide lock: the alarm
        pair = counter(throttling.client_address_key("svc", ADDRESS))
        for locked in (pair, counter(throttling.client_key("svc"))):
            assert locked.locked_until == start + timedelta(seconds=300) and locked.failures == 0
        assert counter(throttling.client_ip_key(ADDRESS)).failures == 3
        clock.tick(10)
        assert throttling.record_client_failure(client_id="svc", ip=ADDRESS) is False
        assert counter(throttling.client_key("svc")).locked_until == start + timedelta(seconds=300)
        assert throttling.check_client(client_id="svc", ip=ADDRESS).retry_after == 290


def test_failures_of_an_ended_window_do_not_add_up(db, limits):
    start = timezone.now()
    with freeze_time(start) as clock:
        for _ in range(2):
            throttling.record_client_failure(client_id="svc", ip=ADDRESS)
        clock.tick(901)
        throttling.record_client_failure(client_id="svc", ip=ADDRESS)
        pair = counter(throttling.client_address_key("svc", ADDRESS))
        assert (pair.failures, pair.locked_until) == (1, None)
        assert pair.window_started_at == start + timedelta(seconds=901)


def test_the_address_limit_counts_unknown_client_ids_and_locks_the_address(db, limits):
    for number in range(5):
        throttling.record_client_failure(client_id=None, ip=ADDRESS)
        assert ThrottleCounter.objects.count() == 1, number
    assert throttling.check_client(client_id="anything", ip=ADDRESS).retry_after == 300


def test_a_limit_of_one_locks_at_the_first_failure(db, limits):
    limits.UAA_THROTTLE_CLIENT_FAILURES = 1
    assert throttling.record_client_failure(client_id="svc", ip=ADDRESS) is True
    assert throttling.check_client(client_id="svc", ip=ADDRESS).retry_after == 300
