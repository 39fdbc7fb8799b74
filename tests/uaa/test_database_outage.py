"""A database outage: 503 with Retry-After, one log line per interval, and the public documents still served.

Attacker (or bad luck) with network position: the database becomes unreachable — a network partition, a
failover, an operator terminating connections, an attacker exhausting its connections. What must not happen:
500 ``server_error`` with a traceback for every request (75 MB of log in 30 s), clients retrying blindly, and
resource servers losing the JWKS exactly when they refresh it. RFC 9110 §15.6.4: 503 is a temporary condition,
with Retry-After (§10.2.3); RFC 6749 §4.1.2.1 and §5.2: the error code is ``temporarily_unavailable``.

The outages here are real: the test server's connection is pointed at a database that cannot be opened
(SQLite: a path under a missing directory; PostgreSQL: a port nobody listens on), and the driver's own error
travels through Django. tests/uaa/test_database_outage_live.py does the same to a running gunicorn.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from types import SimpleNamespace

import psycopg
import pytest
from django.db import connection
from django.db.utils import DatabaseErrorWrapper, IntegrityError
from django.test import Client as HttpClient
from django.utils import timezone as django_timezone

from tests.conftest import REDIRECT_URI
from tests.oauth_client import FORM
from uaa.outage import is_database_unavailable, last_good_copies

OUTAGE_EVENT = "uaa.database_unavailable"
PUBLIC = [
    "/.well-known/jwks.json",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_django_error(driver_error: Exception, driver: object) -> BaseException:
    """What Django raises for ``driver_error`` (django.db.utils.DatabaseErrorWrapper, around every query)."""
    wrapper = DatabaseErrorWrapper(SimpleNamespace(Database=driver, errors_occurred=False))
    try:
        with wrapper:
            raise driver_error
    except Exception as exc:
        return exc
    raise AssertionError("not raised")


def _psycopg_refused() -> Exception:
    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x", connect_timeout=2)
    except psycopg.OperationalError as exc:
        return exc
    raise AssertionError("connected to a closed port")


def _sqlite_cannot_open() -> Exception:
    try:
        sqlite3.connect("/nonexistent-uaa-directory/db.sqlite3")
    except sqlite3.OperationalError as exc:
        return exc
    raise AssertionError("opened a file in a missing directory")


def _sqlite_locked(tmp_path) -> Exception:
    path = str(tmp_path / "locked.sqlite3")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        sqlite3.connect(path, timeout=0).execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        holder.execute("ROLLBACK")
    raise AssertionError("not locked")


# --- which errors are an outage ------------------------------------------------------------------------


def test_errors_that_say_the_database_is_unreachable_are_an_outage():
    """Connection refused (psycopg's bare OperationalError), terminated by an administrator (57P01), too many
    connections (53300), the SQLite file cannot be opened (SQLITE_CANTOPEN), a closed connection
    (Django's InterfaceError): the database is unavailable, so a 503."""
    assert is_database_unavailable(as_django_error(_psycopg_refused(), psycopg))
    assert is_database_unavailable(as_django_error(psycopg.errors.AdminShutdown("terminating"), psycopg))
    assert is_database_unavailable(as_django_error(psycopg.errors.TooManyConnections("too many"), psycopg))
    assert is_database_unavailable(as_django_error(_sqlite_cannot_open(), sqlite3))
    assert is_database_unavailable(
        as_django_error(psycopg.InterfaceError("connection already closed"), psycopg)
    )
    wrapped = RuntimeError("a caller wrapped it")
    wrapped.__cause__ = as_django_error(_psycopg_refused(), psycopg)
    assert is_database_unavailable(wrapped)


def test_errors_of_a_query_are_not_an_outage(tmp_path):
    """A deadlock, a serialization failure, a locked SQLite file, a constraint or a bug are not an outage:
    they stay server_error with their traceback, for the operator to see."""
    assert not is_database_unavailable(as_django_error(psycopg.errors.DeadlockDetected("deadlock"), psycopg))
    assert not is_database_unavailable(as_django_error(psycopg.errors.SerializationFailure("retry"), psycopg))
    assert not is_database_unavailable(as_django_error(psycopg.errors.UndefinedTable("no table"), psycopg))
    assert not is_database_unavailable(as_django_error(_sqlite_locked(tmp_path), sqlite3))
    assert not is_database_unavailable(IntegrityError("duplicate key"))
    assert not is_database_unavailable(RuntimeError("a bug"))


# --- a real outage of the test server's database --------------------------------------------------------


@pytest.fixture
def outage(transactional_db, settings) -> Iterator[Callable[[], None]]:
    """``outage()`` makes the database unreachable for this process's connection, the way a partition does:
    the next query has to connect, and cannot. Restored (and reconnected) at the end."""
    settings.UAA_UNAVAILABLE_LOG_INTERVAL = 3600  # one line for the whole test
    from uaa.outage import _limiter

    _limiter.reset()
    last_good_copies.clear()
    saved = dict(connection.settings_dict)

    def start() -> None:
        connection.close()
        if connection.vendor == "sqlite":
            connection.settings_dict["NAME"] = "/nonexistent-uaa-directory/db.sqlite3"
        else:
            connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))

    def stop() -> None:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    stop()
    _limiter.reset()
    last_good_copies.clear()


@pytest.fixture
def http() -> HttpClient:
    client = HttpClient()
    client.raise_request_exception = False
    return client


def outage_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == OUTAGE_EVENT]


def assert_no_error_records(caplog) -> None:
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def token_request(http: HttpClient, basic: str):
    return http.post(
        "/oauth/token", "grant_type=client_credentials", content_type=FORM, HTTP_AUTHORIZATION=basic
    )


def test_the_oauth_endpoints_answer_503_temporarily_unavailable_with_retry_after(
    http, service_client, outage, caplog, settings
):
    """RFC 6749 §5.2 error body ``temporarily_unavailable``, RFC 9110 §15.6.4 503 with Retry-After, no-store;
    the outage is logged once, as a warning, without a traceback — however many requests fail."""
    basic = service_client.basic
    granted = token_request(http, basic)
    assert granted.status_code == HTTPStatus.OK
    access_token = granted.json()["access_token"]
    outage()
    caplog.clear()
    for url, body in [
        ("/oauth/token", "grant_type=client_credentials"),
        ("/oauth/introspect", "token=abc"),
        ("/oauth/revoke", "token=abc"),
    ] * 5:
        response = http.post(url, body, content_type=FORM, HTTP_AUTHORIZATION=basic)
        assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE, (url, response.content)
        assert response["Retry-After"] == str(settings.UAA_UNAVAILABLE_RETRY_AFTER)
        assert response["Cache-Control"] == "no-store"
        assert response.json()["error"] == "temporarily_unavailable"
        assert "psycopg" not in response.content.decode() and "sqlite" not in response.content.decode()
    response = http.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"] == "temporarily_unavailable"
    records = outage_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING and not records[0].exc_info
    assert_no_error_records(caplog)


def test_html_pages_answer_a_plain_503_page(http, confidential_client, outage, caplog):
    """RFC 9110 §15.6.4: people get a page saying to retry, with Retry-After; no redirect (the client and its
    redirect URI cannot be checked), no 500 page, no traceback."""
    authorize = (
        f"/oauth/authorize?response_type=code&client_id={confidential_client.client_id}"
        f"&redirect_uri={REDIRECT_URI}&scope=openid&code_challenge={'A' * 43}&code_challenge_method=S256"
    )
    outage()
    caplog.clear()
    for response in [
        http.get(authorize),
        http.post("/accounts/login", {"email": "a@example.com", "password": "x" * 12}),
    ]:
        assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE, response.content[:300]
        assert response["Content-Type"].startswith("text/html")
        assert response["Retry-After"]
        assert "Location" not in response
        assert b"Temporarily unavailable" in response.content
        assert b"Traceback" not in response.content
    assert len(outage_records(caplog)) == 1
    assert_no_error_records(caplog)


def test_a_signed_in_browser_gets_the_503_page_when_its_session_cannot_be_read(browser, outage, caplog):
    """The session is read by middleware before any view: that failure is an outage too, not a 500."""
    browser.raise_request_exception = False
    outage()
    caplog.clear()
    response = browser.get("/accounts/security")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert b"Temporarily unavailable" in response.content
    assert_no_error_records(caplog)


def test_jwks_and_discovery_are_served_from_the_last_good_copy(http, outage, caplog, monkeypatch):
    """RFC 7517 §5 / OIDC Discovery §4: resource servers fetch the JWKS when a key is unknown or their copy
    expires; during an outage they get the last good copy (Age says how old), byte for byte, and its ETag.
    (The discovery documents are made to read the database here, as a document listing keys would.)"""
    from tokens.models import SigningKey
    from uaa.oauth import views

    for name in ("openid_configuration", "authorization_server_metadata"):
        build = getattr(views, name)
        monkeypatch.setattr(views, name, lambda build=build: SigningKey.objects.exists() and build())
    good = {url: http.get(url) for url in PUBLIC}
    assert all(response.status_code == HTTPStatus.OK for response in good.values())
    outage()
    caplog.clear()
    for url in PUBLIC:
        response = http.get(url)
        assert response.status_code == HTTPStatus.OK, (url, response.content)
        assert response.content == good[url].content
        assert response["Content-Type"] == good[url]["Content-Type"]
        assert int(response["Age"]) >= 0
        assert response["Cache-Control"] == "public, max-age=60"
    etag = good["/.well-known/jwks.json"]["ETag"]
    assert http.get("/.well-known/jwks.json", HTTP_IF_NONE_MATCH=etag).status_code == HTTPStatus.NOT_MODIFIED
    assert_no_error_records(caplog)


def test_without_a_good_copy_jwks_is_503_and_a_too_old_copy_is_not_served(http, outage, settings, caplog):
    """No copy (a process started during the outage), or one older than UAA_LAST_GOOD_MAX_AGE: a JSON 503 with
    Retry-After, never an empty or ancient key set."""
    outage()
    response = http.get("/.well-known/jwks.json")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"] == "temporarily_unavailable" and response["Retry-After"]
    outage.stop()
    assert http.get("/.well-known/jwks.json").status_code == HTTPStatus.OK
    settings.UAA_LAST_GOOD_MAX_AGE = 1
    time.sleep(1.2)
    outage()
    assert http.get("/.well-known/jwks.json").status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert_no_error_records(caplog)


def test_healthz_stays_up_during_an_outage(http, outage):
    """/healthz is liveness: restarting the web process does not bring the database back (operations.md)."""
    outage()
    assert http.get("/healthz").status_code == HTTPStatus.OK


def test_service_resumes_when_the_database_is_back(http, service_client, outage):
    """After the outage the next request reconnects: tokens again, and fresh documents."""
    outage()
    assert token_request(http, service_client.basic).status_code == HTTPStatus.SERVICE_UNAVAILABLE
    outage.stop()
    assert token_request(http, service_client.basic).status_code == HTTPStatus.OK
    response = http.get("/.well-known/jwks.json")
    assert response.status_code == HTTPStatus.OK and "Age" not in response


def test_the_outage_line_repeats_once_per_interval_with_a_count(
    http, service_client, outage, settings, caplog
):
    """One line per UAA_UNAVAILABLE_LOG_INTERVAL per process, counting the failures it stands for."""
    settings.UAA_UNAVAILABLE_LOG_INTERVAL = 0.5
    outage()
    caplog.clear()
    for _ in range(5):
        token_request(http, service_client.basic)
    time.sleep(0.6)
    for _ in range(3):
        token_request(http, service_client.basic)
    records = outage_records(caplog)
    assert [r.failures for r in records] == [1, 5]  # the first at once; the next covers 4 suppressed + itself
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in records)
    assert records[0].detail and "error_class" in records[0].__dict__


def test_a_query_error_is_still_a_logged_server_error(http, service_client, monkeypatch, caplog):
    """Not an outage (a deadlock here): server_error with the traceback logged once, with its request id."""
    from uaa.oauth import views

    def deadlock(*args, **kwargs):
        raise as_django_error(psycopg.errors.DeadlockDetected("deadlock detected"), psycopg)

    monkeypatch.setattr(views.TokenView, "post", deadlock)
    response = token_request(http, service_client.basic)
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response.json()["error"] == "server_error"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info  # once (not again by django.request), with the traceback


# --- a database that accepts connections and never answers, or answers too late (red team, item 16) -----
# Attacker (or bad luck) with network position: the database's port accepts TCP connections but nothing
# answers (a hung server, a half-open failover, a black-holing firewall), or the database is there but
# stalled: a table locked (``LOCK TABLE tokens_signingkey IN ACCESS EXCLUSIVE MODE``), a query that never
# ends. What must not happen: a 500 with a traceback after connect_timeout, and workers that wait forever.


def test_a_connection_that_timed_out_is_an_outage():
    """psycopg raises connect_timeout as psycopg.errors.ConnectionTimeout, an OperationalError subclass
    without an SQLSTATE (the class was compared by name: a 500 with a full traceback)."""
    assert is_database_unavailable(
        as_django_error(psycopg.errors.ConnectionTimeout("connection timeout expired"), psycopg)
    )


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        psycopg.errors.IdleInTransactionSessionTimeout("terminating connection due to idle-in-transaction"),
    ],
    ids=["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"],
)
def test_a_database_that_does_not_answer_in_time_is_an_outage(error):
    """The web process's statement_timeout, lock_timeout and idle_in_transaction_session_timeout
    (uaa/settings.py) end a wait on a stalled or locked database: that is a 503 with Retry-After, not a
    server_error — the database cannot serve this request now, and will again."""
    assert is_database_unavailable(as_django_error(error, psycopg))


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections (the kernel's backlog) and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


@pytest.fixture
def unanswered(outage, black_hole, settings):
    """``unanswered()``: the database server accepts the connection and never answers (PostgreSQL only)."""
    if connection.vendor != "postgresql":
        pytest.skip("a server that accepts and never answers is a PostgreSQL (libpq connect_timeout) case")

    def start() -> None:
        connection.close()
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(black_hole))
        connection.settings_dict["OPTIONS"] = {
            **connection.settings_dict.get("OPTIONS", {}),
            "connect_timeout": 1,
        }

    return start


def test_a_database_that_accepts_and_never_answers_is_503_not_a_traceback(
    http, service_client, unanswered, caplog, settings
):
    """After libpq's connect_timeout the token endpoint answers 503 temporarily_unavailable with
    Retry-After, the JWKS its last good copy, each logged once per interval without a traceback."""
    assert http.get("/.well-known/jwks.json").status_code == HTTPStatus.OK
    unanswered()
    caplog.clear()
    started = time.monotonic()
    response = token_request(http, service_client.basic)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE, response.content
    assert response.json()["error"] == "temporarily_unavailable"
    assert response["Retry-After"] == str(settings.UAA_UNAVAILABLE_RETRY_AFTER)
    assert time.monotonic() - started < 5
    assert http.get("/.well-known/jwks.json").status_code == HTTPStatus.OK  # the last good copy
    records = outage_records(caplog)
    assert len(records) == 1 and "ConnectionTimeout" in records[0].error_class
    assert_no_error_records(caplog)


# --- a revoked key and the last good copy of the JWKS (red team, item 16) ----------------------------
# Attacker: someone holding a signing key that was just revoked (stolen, so revoked), who waits for — or
# causes — a database outage, so that resource servers refreshing their JWKS then get a copy that still
# lists the key, and accept its tokens for as long as they cache it.


def _kids(response) -> set[str]:
    return {key["kid"] for key in json.loads(response.content)["keys"]}


def _revoke_active_key() -> str:
    from tokens.models import SigningKey
    from tokens.rotation import revoke_signing_key

    kid = SigningKey.objects.active().get(algorithm="RS256").kid
    revoke_signing_key(kid=kid, now=django_timezone.now(), reason="compromised")
    return kid


def test_a_revoked_key_is_never_served_from_the_last_good_copy(http, outage, caplog):
    """RFC 7517 §5 and docs/key-rotation.md: a revocation removes the key from the JWKS at once. During an
    outage the copy served is the JWKS as the revocation left it (its commit replaced the shared copy),
    never one from before (6 of 6 answers listed the revoked kid)."""
    before = http.get("/.well-known/jwks.json")
    assert before.status_code == HTTPStatus.OK
    revoked = _revoke_active_key()
    assert revoked in _kids(before)
    outage()
    caplog.clear()
    for _ in range(6):
        response = http.get("/.well-known/jwks.json")
        assert response.status_code in (HTTPStatus.OK, HTTPStatus.SERVICE_UNAVAILABLE)
        if response.status_code == HTTPStatus.OK:
            assert revoked not in _kids(response)
            assert _kids(response)  # the replacement, published by the revocation
    assert_no_error_records(caplog)


def test_another_process_copy_from_before_a_revocation_is_not_served(http, outage):
    """The copies of the other web processes (this one's, put back as it was before) carry the JWKS
    generation of their time; the revocation moved it in the shared cache, so they are refused."""
    from uaa.middleware import jwks_path

    path = jwks_path()
    http.get(path)
    stale = last_good_copies._copies[path]
    revoked = _revoke_active_key()
    last_good_copies._copies[path] = stale  # what a process that did not see the revocation still holds
    from django.core.cache import cache

    cache.delete(last_good_copies._key(path))  # and no shared copy: only the stale one is left
    outage()
    response = http.get(path)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert revoked.encode() not in response.content


def test_without_the_shared_cache_a_process_serves_its_copy_only_within_the_jwks_max_age(
    http, outage, settings, monkeypatch
):
    """When the cache cannot say whether the keys changed (Redis down too), a copy no older than
    UAA_JWKS_MAX_AGE is served — clients may have cached one that old anyway — and an older one is not."""
    from django.core.cache import cache

    from uaa.middleware import jwks_path

    path = jwks_path()
    assert http.get(path).status_code == HTTPStatus.OK
    outage()

    def unreachable(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get", unreachable)
    monkeypatch.setattr(cache, "add", unreachable)
    assert http.get(path).status_code == HTTPStatus.OK
    settings.UAA_JWKS_MAX_AGE = 0
    time.sleep(0.05)
    assert http.get(path).status_code == HTTPStatus.SERVICE_UNAVAILABLE
