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

import json
import math
import os
import re
import shutil
import time
import uuid
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


def _postgres_server() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url.rsplit("/", 1)[0] if url.startswith(("postgres://", "postgresql://")) else None


@contextmanager
def postgres_database(server: str) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A fresh database on ``server``; yields its URL, ``down()`` and ``up()``; dropped at the end."""
    name = f"uaa_robust_outage_{uuid.uuid4().hex[:8]}"
    admin_url = server.replace("postgres://", "postgresql://", 1) + "/postgres"
    admin = psycopg.connect(admin_url, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')

    def down() -> None:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    def up() -> None:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    try:
        yield f"{server}/{name}", down, up
    finally:
        up()
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


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
        server = _postgres_server()
        if server is None:
            pytest.skip("the PostgreSQL outage runs when DATABASE_URL names a PostgreSQL server")
        with postgres_database(server) as found:
            yield found
    else:
        if _postgres_server() is not None:
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
