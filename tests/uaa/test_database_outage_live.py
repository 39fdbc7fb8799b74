"""A real database outage under a running gunicorn (the web command of docker-compose.yml, two workers).

PostgreSQL (when DATABASE_URL names one): the server refuses the database (``ALTER DATABASE …
ALLOW_CONNECTIONS false``) and terminates every backend (``pg_terminate_backend``), as a failover or an
operator would. SQLite: the database file is moved away and a directory stands in its place. During the
outage, a burst of requests: token, introspection and revocation answer 503 ``temporarily_unavailable`` with
Retry-After (RFC 6749 §5.2, RFC 9110 §15.6.4), pages a plain 503, the JWKS and discovery their last good copy,
/healthz 200; the log holds at most one outage line per worker per interval and no traceback. Then the
database comes back and tokens are issued again, without a restart.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.uaa.live import (
    call,
    create_service_client,
    free_port,
    healthy,
    manage,
    postgres_database,
    postgres_server,
    process_env,
    processes,
    start,
    wait_for,
    web_script,
)

__all__ = ["process_env", "processes"]  # fixtures

WORKERS = 2
INTERVAL = 2.0  # UAA_UNAVAILABLE_LOG_INTERVAL for this test: a burst spans a few intervals
BURST_SECONDS = 5.0
PUBLIC = [
    "/.well-known/jwks.json",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
]


@contextmanager
def sqlite_database(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    path = tmp_path / "outage.sqlite3"
    aside = tmp_path / "aside"

    def down() -> None:
        aside.mkdir()
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                shutil.move(f"{path}{suffix}", aside / f"db{suffix}")
        path.mkdir()  # what stands at the database's path now cannot be opened as a database

    def up() -> None:
        path.rmdir()
        for suffix in ("", "-wal", "-shm"):
            if (aside / f"db{suffix}").exists():
                shutil.move(aside / f"db{suffix}", f"{path}{suffix}")
        aside.rmdir()

    yield f"sqlite:///{path}", down, up


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path):
    if request.param == "postgresql":
        server = postgres_server()
        if server is None:
            pytest.skip("the PostgreSQL outage runs when DATABASE_URL names a PostgreSQL server")
        with postgres_database(server, prefix="uaa_robust_outage") as found:
            yield found
    else:
        if postgres_server() is not None:
            pytest.skip("the SQLite outage runs when the suite runs on SQLite")
        with sqlite_database(tmp_path) as found:
            yield found


def json_lines(log: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_a_database_outage_is_503_with_retry_after_bounded_logs_and_the_last_good_documents(
    database, process_env, processes, tmp_path
):
    url, down, up = database
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **process_env,
        "DATABASE_URL": url,
        "UAA_ISSUER": base,
        "UAA_UNAVAILABLE_LOG_INTERVAL": str(INTERVAL),
        "UAA_LOG_FORMAT": "json",
        "CACHE_URL": f"filecache://{tmp_path / 'cache'}",  # shared by the workers, as Redis is in compose
    }
    log = tmp_path / "web.log"
    processes.append(start(web_script(port, workers=WORKERS), env, log))
    wait_for(healthy(base), "gunicorn /healthz", log, timeout=120)
    credentials = create_service_client(env)
    token = {"grant_type": "client_credentials", **credentials}
    assert call(f"{base}/oauth/token", data=token).status == HTTPStatus.OK
    good = {path: call(base + path) for path in PUBLIC}
    assert all(answer.status == HTTPStatus.OK for answer in good.values())

    down()
    logged_before = len(log.read_text(errors="replace"))
    started = time.monotonic()
    answers: list[tuple[str, object]] = []

    def one(i: int) -> None:
        kind = ["token", "introspect", "page", "public", "healthz"][i % 5]
        if kind == "token":
            answers.append((kind, call(f"{base}/oauth/token", data=token)))
        elif kind == "introspect":
            answers.append((kind, call(f"{base}/oauth/introspect", data={**credentials, "token": "abc"})))
        elif kind == "page":
            answers.append((kind, call(f"{base}/oauth/authorize?response_type=code&client_id=abc")))
        elif kind == "public":
            path = PUBLIC[(i // 5) % len(PUBLIC)]
            answers.append((path, call(base + path)))
        else:
            answers.append((kind, call(f"{base}/healthz")))

    with ThreadPoolExecutor(max_workers=6) as pool:
        i = 0
        while time.monotonic() - started < BURST_SECONDS:
            list(pool.map(one, range(i, i + 30)))
            i += 30
    elapsed = time.monotonic() - started
    during = log.read_text(errors="replace")[logged_before:]
    print(f"{len(answers)} requests in {elapsed:.1f}s of outage; {len(during)} bytes of log")

    for kind, answer in answers:
        if kind in ("token", "introspect"):
            assert answer.status == HTTPStatus.SERVICE_UNAVAILABLE, (kind, answer.status, answer.body[:300])
            assert answer.headers["Retry-After"] == "10"
            assert answer.headers["Cache-Control"] == "no-store"
            assert answer.json()["error"] == "temporarily_unavailable"
        elif kind == "page":
            assert answer.status == HTTPStatus.SERVICE_UNAVAILABLE, answer.body[:300]
            assert answer.headers["Content-Type"].startswith("text/html")
            assert answer.headers["Retry-After"] == "10"
        elif kind == "healthz":
            assert answer.status == HTTPStatus.OK  # liveness, not readiness (docs/operations.md)
        else:
            assert answer.status == HTTPStatus.OK, (kind, answer.status, answer.body[:300])
            assert answer.body == good[kind].body  # byte for byte the last good copy
            assert "Age" in answer.headers or kind != "/.well-known/jwks.json"

    records = json_lines(during)
    lines = [r for r in records if r["event"] == "uaa.database_unavailable"]
    bound = WORKERS * (math.ceil(elapsed / INTERVAL) + 1)
    assert 1 <= len(lines) <= bound, (len(lines), bound, len(answers))
    assert all(r["level"] == "warning" and "exc_info" not in r for r in lines)
    assert not [r for r in records if r["level"] in ("error", "critical")], during[-3000:]
    assert "Traceback" not in during
    assert not re.search(r"\[(ERROR|CRITICAL)\]", during), during[-3000:]  # gunicorn's own log
    failed = sum(int(r["failures"]) for r in lines)  # type: ignore[call-overload]
    print(
        f"{len(answers)} requests in {elapsed:.1f}s of outage; {len(lines)} log lines for {failed} failures"
    )

    up()
    wait_for(
        lambda: call(f"{base}/oauth/token", data=token).status == HTTPStatus.OK,
        "tokens again after the outage",
        log,
        timeout=30,
    )
    assert call(base + "/.well-known/jwks.json").status == HTTPStatus.OK
    assert urlsplit(base).port == port


# --- a stalled or locked database, and a revoked key (red team, issue 8 item 16) ---------------------


def _token_kid(base: str, token: dict[str, str]) -> str:
    answer = call(f"{base}/oauth/token", data=token)
    assert answer.status == HTTPStatus.OK, answer.body[:300]
    header = answer.json()["access_token"].split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def _kids(answer) -> set[str]:
    return {key["kid"] for key in answer.json()["keys"]}


def _start_web(env: dict[str, str], processes, tmp_path: Path, port: int) -> Path:
    log = tmp_path / "web.log"
    processes.append(start(web_script(port, workers=WORKERS), env, log))
    wait_for(healthy(f"http://127.0.0.1:{port}"), "gunicorn /healthz", log, timeout=120)
    return log


def test_a_locked_table_holds_no_worker_beyond_the_lock_timeout(process_env, processes, tmp_path):
    """``LOCK TABLE tokens_signingkey IN ACCESS EXCLUSIVE MODE`` held for 12 s (a migration, an operator, an
    attacker with database access): before, every token request waited for the lock, both workers were
    pinned, and discovery, sign-in and /healthz stalled behind them (nginx: 504). The web process's
    lock_timeout and statement_timeout (uaa/settings.py) end each wait: token requests are 503
    temporarily_unavailable with Retry-After within seconds (RFC 6749 §5.2, RFC 9110 §15.6.4), the JWKS is
    its last good copy, discovery and /healthz are answered, nothing is logged as an error."""
    server = postgres_server()
    if server is None:
        pytest.skip("statement_timeout and lock_timeout are PostgreSQL's (DATABASE_URL=postgres://...)")
    with postgres_database(server, prefix="uaa_robust_outage") as (url, _down, _up):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **process_env,
            "DATABASE_URL": url,
            "UAA_ISSUER": base,
            "UAA_DB_LOCK_TIMEOUT": "1",
            "UAA_DB_STATEMENT_TIMEOUT": "2",
            "UAA_LOG_FORMAT": "json",
            "CACHE_URL": f"filecache://{tmp_path / 'cache'}",
        }
        log = _start_web(env, processes, tmp_path, port)
        token = {"grant_type": "client_credentials", **create_service_client(env)}
        assert call(f"{base}/oauth/token", data=token).status == HTTPStatus.OK
        good = call(f"{base}/.well-known/jwks.json")
        assert good.status == HTTPStatus.OK
        logged_before = len(log.read_text(errors="replace"))
        locker = psycopg.connect(url.replace("postgres://", "postgresql://", 1))
        locker.execute("LOCK TABLE tokens_signingkey IN ACCESS EXCLUSIVE MODE")  # in a transaction: held
        started = time.monotonic()
        try:
            timed: list[tuple[str, object, float]] = []

            def one(kind: str) -> None:
                began = time.monotonic()
                if kind == "token":
                    answer = call(f"{base}/oauth/token", data=token, timeout=10)
                elif kind == "jwks":
                    answer = call(f"{base}/.well-known/jwks.json", timeout=10)
                elif kind == "discovery":
                    answer = call(f"{base}/.well-known/openid-configuration", timeout=10)
                else:
                    answer = call(f"{base}/healthz", timeout=10)
                timed.append((kind, answer, time.monotonic() - began))

            kinds = ["token"] * 8 + ["jwks"] * 4 + ["discovery"] * 2 + ["healthz"] * 2
            with ThreadPoolExecutor(max_workers=6) as pool:
                list(pool.map(one, kinds))
            assert time.monotonic() - started < 11  # all answered while the lock is still held
        finally:
            locker.rollback()
            locker.close()
        slowest = max(seconds for _, _, seconds in timed)
        print(f"table locked: {len(timed)} requests answered, the slowest in {slowest:.2f} s")
        for kind, answer, seconds in timed:
            if kind == "token":
                assert answer.status == HTTPStatus.SERVICE_UNAVAILABLE, answer.body[:300]
                assert answer.headers["Retry-After"] and answer.json()["error"] == "temporarily_unavailable"
            else:
                assert answer.status == HTTPStatus.OK, (kind, answer.body[:300])
            if kind == "jwks":
                assert answer.body == good.body  # the last good copy
            assert seconds < 8, (kind, seconds)
        during = log.read_text(errors="replace")[logged_before:]
        assert "Traceback" not in during and not re.search(r"\[(ERROR|CRITICAL)\]", during), during[-3000:]
        assert not [r for r in json_lines(during) if r["level"] in ("error", "critical")], during[-3000:]
        assert call(f"{base}/oauth/token", data=token).status == HTTPStatus.OK  # the lock is gone


def test_the_time_limits_are_the_web_processs_only(process_env, tmp_path):
    """A migration or ``manage.py audit export`` may run for minutes: manage.py commands get no
    statement_timeout; TCP keepalives and tcp_user_timeout apply everywhere."""
    server = postgres_server()
    if server is None:
        pytest.skip("PostgreSQL only")
    with postgres_database(server, prefix="uaa_robust_outage") as (url, _down, _up):
        env = {**process_env, "DATABASE_URL": url}
        code = (
            "from django.db import connection; c = connection.cursor(); "
            "c.execute('SHOW statement_timeout'); print(c.fetchone()[0]); "
            "print(connection.settings_dict['OPTIONS'].get('tcp_user_timeout'))"
        )
        shown = manage(env, "shell", "-v", "0", "-c", code).split()
        assert shown == ["0", "30000"]
        web = manage({**env, "UAA_PROCESS": "web"}, "shell", "-v", "0", "-c", code).split()
        assert web == ["5s", "30000"]  # what uaa/wsgi.py sets for gunicorn's workers


def test_after_a_revocation_an_outage_never_serves_the_revoked_key(
    database, process_env, processes, tmp_path
):
    """docs/key-rotation.md: a revoked key leaves the JWKS at once. Two workers each hold a copy of the JWKS
    that lists the key, ``manage.py revoke_signing_key`` (another process) revokes it, then the database
    goes down: before, 6 of 6 answers were the old copy with the revoked kid (for up to
    UAA_LAST_GOOD_MAX_AGE); now the revocation's commit replaced the shared copy and moved the JWKS
    generation, so every answer is the JWKS without it."""
    url, down, _up = database
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**process_env, "DATABASE_URL": url, "UAA_ISSUER": base}
    env["CACHE_URL"] = f"filecache://{tmp_path / 'cache'}"  # shared by the workers and manage.py (Redis)
    _start_web(env, processes, tmp_path, port)
    token = {"grant_type": "client_credentials", **create_service_client(env)}
    kid = _token_kid(base, token)
    for _ in range(6):  # both workers answer, and remember a copy listing the key
        assert kid in _kids(call(f"{base}/.well-known/jwks.json"))
    manage(env, "revoke_signing_key", "--reason", "compromised", "--", kid)
    down()
    answers = [call(f"{base}/.well-known/jwks.json") for _ in range(6)]
    served = [answer for answer in answers if answer.status == HTTPStatus.OK]
    assert all(answer.status in (HTTPStatus.OK, HTTPStatus.SERVICE_UNAVAILABLE) for answer in answers)
    assert not [answer for answer in served if kid in _kids(answer)], "the revoked key was served"
    assert served, "the replacement copy (the JWKS after the revocation) is served"
    print(f"after revoking {kid[:8]}: {len(served)} of 6 JWKS answers served, none with the revoked key")
